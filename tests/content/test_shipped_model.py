"""The shipped model is rebuilt exactly by its documented command, and keeps its dev figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeward.cli.spam import spam_app
from edgeward.content.classifier import default_model_path

from .conftest import corpus

runner = CliRunner()


@pytest.mark.slow
def test_documented_command_rebuilds_the_shipped_model(tmp_path: Path) -> None:
    """Same features, same Bayes term, weights equal to float32 rounding.

    The fit is deterministic on one machine (two runs give one SHA-256), but BLAS kernels pick
    their summation order by CPU, so another processor moves the last bit of some float32
    weights (seen: 6e-8) and the calibration's fourth decimal. The tolerance is a thousand
    times that noise and still far below what any change of data, features or settings moves.
    """
    out = tmp_path / "model.npz"
    result = runner.invoke(spam_app, ["train", "--corpora", str(corpus()), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(default_model_path()) as shipped, np.load(out) as rebuilt:
        _assert_same_model(shipped, rebuilt)


def _assert_same_model(shipped: Any, rebuilt: Any) -> None:
    assert sorted(shipped.files) == sorted(rebuilt.files)
    assert np.array_equal(shipped["index"], rebuilt["index"])
    for name in shipped.files:
        if name in ("index", "meta"):
            continue
        assert shipped[name].shape == rebuilt[name].shape, name
        assert float(np.max(np.abs(shipped[name] - rebuilt[name]), initial=0.0)) < 1e-4, name
    meta = json.loads(bytes(shipped["meta"]).decode())
    again = json.loads(bytes(rebuilt["meta"]).decode())
    assert meta.keys() == again.keys()
    for key, value in meta.items():
        if isinstance(value, float):
            assert abs(value - again[key]) < 1e-3, key
        else:
            assert value == again[key], key


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
    # Content alone rejects at SCL 8 (the default reject_threshold), a subset of SCL 7 and up.
    for row in rows.values():
        assert row["share_scl>=8"] <= row["share_scl>=7"] <= row["share_scl>=4"]
    assert rows[("foff-milter-ham", "ham")]["share_scl>=8"] < 0.05
    assert rows[("spamassassin", "spam")]["roc_auc"] > 0.998


def test_eval_without_inputs_is_a_clear_error() -> None:
    result = runner.invoke(spam_app, ["eval"])
    assert result.exit_code == 2
    assert "--corpora" in result.output
