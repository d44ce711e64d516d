"""``edgeward spam status``: the model's origin before and after learning, the ledger by path."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from edgeward.cli.spam import spam_app
from edgeward.cli.spam_status import TRAIN_COMMAND
from edgeward.content.classifier import default_model_path

from .conftest import DATA

runner = CliRunner()


def config(tmp_path: Path, learning: str = "") -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text(f"accepted_domains = ['example.test']\n[server]\ndata_dir = '{tmp_path}'\n{learning}")
    return path


def status(path: Path) -> dict[str, Any]:
    result = runner.invoke(spam_app, ["status", "-c", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.output)
    return report


def test_a_fresh_gateway_runs_the_shipped_model_and_says_how_to_rebuild_it(tmp_path: Path) -> None:
    report = status(config(tmp_path))
    origin = report["origin"]
    assert origin["source"] == "file" and origin["shipped"] is True
    assert origin["sha256"] == hashlib.sha256(default_model_path().read_bytes()).hexdigest()
    assert origin["train_command"] == TRAIN_COMMAND
    assert not (tmp_path / "state" / "content-model.db").exists()  # asking creates nothing


def test_manual_lessons_are_counted_and_the_live_version_shown(tmp_path: Path) -> None:
    path = config(tmp_path)
    learned = runner.invoke(spam_app, ["learn", "--spam", str(DATA / "spam.eml"), "-c", str(path)])
    assert learned.exit_code == 0, learned.output
    report = status(path)
    assert (report["origin"]["source"], report["origin"]["live_version"]) == ("live", 1)
    assert report["learned"]["manual"] == {**report["learned"]["manual"], "spam": 1, "ham": 0}
    table = runner.invoke(spam_app, ["status", "-c", str(path)])
    assert table.exit_code == 0 and "live model, version 1" in table.output and "manual" in table.output


def test_learning_off_is_shown(tmp_path: Path) -> None:
    report = status(config(tmp_path, "[learning]\nenabled = false\n"))
    assert report["learning"]["enabled"] is False


def _quarantine_one(tmp_path: Path) -> str:
    from edgeward.quarantine.store import QuarantineEntry, QuarantineStore

    body = (DATA / "ham.eml").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    entry = QuarantineEntry("", "a@remote.test", ("u@example.test",), "content-filter", scl=9)
    return QuarantineStore(tmp_path / "quarantine", fsync=False).put(entry, body)


def test_a_release_is_counted_unless_release_learning_is_off(tmp_path: Path) -> None:
    from edgeward.cli.quarantine import quarantine_app

    path = config(tmp_path)
    released = runner.invoke(quarantine_app, ["release", _quarantine_one(tmp_path), "-c", str(path)])
    assert released.exit_code == 0 and "learned it as not spam" in released.output
    assert status(path)["learned"]["release"]["ham"] == 1
    path = config(tmp_path, "[learning]\nreleases = false\n")
    released = runner.invoke(quarantine_app, ["release", _quarantine_one(tmp_path), "-c", str(path)])
    assert released.exit_code == 0 and "learned" not in released.output
    assert status(path)["learned"]["release"]["ham"] == 1
