"""Evaluation metrics for a spam scorer: ROC, recall at fixed false-positive rates, SCL tables.

This module owns :class:`EvalReport` and :func:`evaluate_scores`, used by ``edgeward spam eval``
and by the benchmark, so Edgeward and its peers are measured by the same code. Scores may be any
monotone spam score (probability, SpamAssassin points, rspamd points); ties are handled as in
scikit-learn's ``roc_curve``. Recall at an FP rate is the best recall whose FP rate does not exceed
it, so with fewer than 1000 ham "recall at 0.1 % FP" means recall with no false positive at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["EvalReport", "evaluate_scores", "write_roc_png"]


@dataclass
class EvalReport:
    n_ham: int
    n_spam: int
    roc_auc: float
    recall_at_fpr: dict[float, float]
    # At the decision threshold: precision, recall, false-positive rate.
    precision: float
    recall: float
    fpr: float
    # SCL -> (ham count, spam count); only when SCLs were given.
    scl_table: dict[int, tuple[int, int]] = field(default_factory=dict)
    fpr_curve: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    tpr_curve: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))


def evaluate_scores(
    ham_scores: npt.ArrayLike,
    spam_scores: npt.ArrayLike,
    threshold: float,
    *,
    ham_scl: npt.ArrayLike | None = None,
    spam_scl: npt.ArrayLike | None = None,
) -> EvalReport:
    """Metrics for a scorer; a message is called spam when its score is ``>= threshold``."""
    from sklearn.metrics import roc_auc_score, roc_curve

    ham = np.asarray(ham_scores, dtype=np.float64)
    spam = np.asarray(spam_scores, dtype=np.float64)
    if ham.size == 0 or spam.size == 0:
        raise ValueError("evaluation needs at least one ham and one spam message")
    labels = np.concatenate([np.zeros(ham.size), np.ones(spam.size)])
    scores = np.concatenate([ham, spam])
    fpr_curve, tpr_curve, _ = roc_curve(labels, scores)
    recall_at = {rate: float(tpr_curve[fpr_curve <= rate + 1e-12].max()) for rate in (0.001, 0.01)}
    tp = int((spam >= threshold).sum())
    fp = int((ham >= threshold).sum())
    report = EvalReport(
        n_ham=int(ham.size),
        n_spam=int(spam.size),
        roc_auc=float(roc_auc_score(labels, scores)),
        recall_at_fpr=recall_at,
        precision=tp / (tp + fp) if tp + fp else 1.0,
        recall=tp / spam.size,
        fpr=fp / ham.size,
        fpr_curve=np.asarray(fpr_curve, dtype=np.float64),
        tpr_curve=np.asarray(tpr_curve, dtype=np.float64),
    )
    if ham_scl is not None and spam_scl is not None:
        ham_levels = np.asarray(ham_scl, dtype=np.int64)
        spam_levels = np.asarray(spam_scl, dtype=np.int64)
        report.scl_table = {
            level: (int((ham_levels == level).sum()), int((spam_levels == level).sum()))
            for level in range(10)
        }
    return report


def write_roc_png(
    curves: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]], out: Path
) -> None:
    """ROC curves (log FP axis, where the operating points are) as a PNG, via the Agg backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Figure + FigureCanvasAgg directly: no pyplot global state, no GUI backend selection.
    figure = Figure(figsize=(6, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for name, (fpr, tpr) in curves.items():
        axes.plot(np.maximum(fpr, 1e-4), tpr, label=name, drawstyle="steps-post")
    axes.set_xscale("log")
    axes.set_xlim(1e-4, 1.0)
    axes.set_ylim(0.0, 1.01)
    axes.set_xlabel("false-positive rate (ham called spam)")
    axes.set_ylabel("recall (spam caught)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(str(out), format="png")
