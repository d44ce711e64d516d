"""``edgeward spam`` through Typer's CliRunner."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.spam import spam_app

from .conftest import DATA, read

runner = CliRunner()


@pytest.fixture
def labelled(tmp_path: Path) -> tuple[Path, Path]:
    """Small ham and spam folders (variants of the fixtures), spam also as a .tar.gz."""
    ham, spam = tmp_path / "ham", tmp_path / "spam"
    ham.mkdir()
    spam.mkdir()
    for i in range(8):
        (ham / f"{i}.eml").write_bytes(read("ham.eml").replace(b"Alice", f"Alice{i}".encode()))
        (spam / f"{i}.eml").write_bytes(read("spam.eml").replace(b"Friend", f"Friend{i}".encode()))
    with tarfile.open(tmp_path / "more-spam.tar.gz", "w:gz") as tar:
        tar.add(spam, arcname="spam")
    return ham, spam


def test_train_eval_classify(tmp_path: Path, labelled: tuple[Path, Path]) -> None:
    ham, spam = labelled
    model = tmp_path / "model.npz"
    result = runner.invoke(
        spam_app,
        [
            "train",
            str(ham),
            "--spam",
            str(tmp_path / "more-spam.tar.gz"),
            "--out",
            str(model),
            "--bits",
            "14",
        ],
    )
    assert result.exit_code == 0, result.output
    assert model.stat().st_size > 0
    png = tmp_path / "roc.png"
    result = runner.invoke(
        spam_app,
        [
            "eval",
            "--ham",
            str(ham),
            "--spam",
            str(spam),
            "--model",
            str(model),
            "--roc-png",
            str(png),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["ham"] == 8 and metrics["spam"] == 8
    assert metrics["roc_auc"] == 1.0
    assert png.read_bytes().startswith(b"\x89PNG")
    result = runner.invoke(spam_app, ["classify", str(DATA / "spam.eml"), "--model", str(model), "--json"])
    record = json.loads(result.stdout)
    assert record["scl"] >= 7 and record["path"].endswith("spam.eml")


def test_eval_table_output(labelled: tuple[Path, Path]) -> None:
    ham, spam = labelled
    result = runner.invoke(spam_app, ["eval", "--ham", str(ham), "--spam", str(spam)])
    assert result.exit_code == 0, result.output
    assert "messages per SCL" in result.stdout and "roc_auc" in result.stdout


def test_classify_lines(tmp_path: Path) -> None:
    result = runner.invoke(spam_app, ["classify", str(DATA)])
    assert result.exit_code == 0, result.output
    lines = {Path(line.split("\t")[0]).name: line for line in result.stdout.splitlines()}
    assert set(lines) == {"gtube.eml", "ham.eml", "phish.eml", "spam.eml"}
    assert "\tSCL=9\t" in lines["gtube.eml"] and "GTUBE" in lines["gtube.eml"]
    assert "\tSCL=0\t" in lines["ham.eml"]
    assert "PCL=8" in lines["phish.eml"]


def test_learn_updates_state(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    message = tmp_path / "report.eml"
    message.write_bytes(read("ham.eml").replace(b"Thanks,", b"Special offer for you today.\nThanks,"))
    before = json.loads(runner.invoke(spam_app, ["classify", str(message), "--json"]).stdout)
    result = runner.invoke(spam_app, ["learn", "--spam", str(message), "--state", str(state)])
    assert result.exit_code == 0, result.output
    assert "learned 1 message(s) as spam; live model version 1" in result.stdout
    from edgeward.content import SpamClassifier, SqliteModelStateStore

    with SqliteModelStateStore(state) as store:
        after = SpamClassifier.load(store=store).score(message.read_bytes())
    assert after.probability > before["probability"]


def test_bad_input_exit_code_2(tmp_path: Path) -> None:
    unlabelled = tmp_path / "mail"
    unlabelled.mkdir()
    result = runner.invoke(spam_app, ["train", str(unlabelled)])
    assert result.exit_code == 2
    result = runner.invoke(spam_app, ["classify", str(tmp_path / "missing.eml")])
    assert result.exit_code == 2
    bad_model = tmp_path / "bad.npz"
    bad_model.write_bytes(b"not a model")
    result = runner.invoke(spam_app, ["classify", str(DATA / "ham.eml"), "--model", str(bad_model)])
    assert result.exit_code == 2


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("../shared/corpora/spamassassin/spamassassin-train-ham.tar.gz", False),
        ("corpus/spamassassin-dev-spam.tar.gz", True),
        ("mail/easy_ham_2/0001.eml", False),
        ("/home/graham/inbox", None),
        ("/archive/ham/spam-reports", True),
    ],
)
def test_label_from_path(path: str, label: bool | None) -> None:
    from edgeward.content.sources import label_from_path

    assert label_from_path(path) is label
