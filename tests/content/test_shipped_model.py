"""The shipped model is rebuilt exactly by its documented command, and keeps its dev figures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.spam import spam_app
from edgeward.content.classifier import default_model_path

from .conftest import corpus

runner = CliRunner()


@pytest.mark.slow
def test_documented_command_rebuilds_the_shipped_model_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "model.npz"
    result = runner.invoke(spam_app, ["train", "--corpora", str(corpus()), "--out", str(out)])
    assert result.exit_code == 0, result.output
    shipped = hashlib.sha256(default_model_path().read_bytes()).hexdigest()
    assert hashlib.sha256(out.read_bytes()).hexdigest() == shipped


def test_dev_report_names_every_source_and_stays_on_modern_ham() -> None:
    result = runner.invoke(spam_app, ["eval", "--corpora", str(corpus()), "--json"])
    assert result.exit_code == 0, result.output
    rows = {(r["source"], r["label"]): r for r in json.loads(result.output)}
    assert set(rows) == {
        ("spamassassin", "ham"),
        ("spamassassin", "spam"),
        ("abuse-desk-ham", "ham"),
        ("foff-milter-ham", "ham"),
        ("foff-milter-spam", "spam"),
        ("scam-archive-spam", "spam"),
    }
    # The defect of the issue: modern receipts and statements rejected. Its regression guard is a
    # ceiling far above the measured value (docs/content-model.md), not the measured value.
    assert rows[("foff-milter-ham", "ham")]["share_scl>=7"] < 0.1
    assert rows[("abuse-desk-ham", "ham")]["share_scl>=7"] < 0.02
    assert rows[("spamassassin", "spam")]["roc_auc"] > 0.998


def test_eval_without_inputs_is_a_clear_error() -> None:
    result = runner.invoke(spam_app, ["eval"])
    assert result.exit_code == 2
    assert "--corpora" in result.output
