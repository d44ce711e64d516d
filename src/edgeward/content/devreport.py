"""Per-source figures of a scorer on the development sets of :mod:`edgeward.content.corpora`.

This module owns :func:`dev_report`: for every dev set, the share of messages at or above the
SCL at which content alone rejects (:data:`REJECT_SCL`, the content filter's default), at SCL 7
(where two more points from other agents reach the policy's reject total) and at the quarantine
SCL (:data:`QUARANTINE_SCL`) (for ham that is the false-positive rate, for spam the recall) and
ROC AUC. An archive holds one label only, so the
AUC of a modern ham archive is taken against all modern dev spam and that of a modern spam archive
against all modern dev ham; SpamAssassin dev is measured on its own ham and spam.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgeward.config.schema import ContentFilterConfig
from edgeward.content.corpora import CorpusSet

__all__ = ["NEAR_REJECT_SCL", "QUARANTINE_SCL", "REJECT_SCL", "SourceFigures", "dev_report"]

# The content filter's default reject_threshold: the SCL at which content alone rejects.
REJECT_SCL: int = ContentFilterConfig.model_fields["reject_threshold"].default
# The policy's reject total is the weight of SCL 8; SCL 7 is two points of other findings short.
NEAR_REJECT_SCL = 7
# Exchange's junk threshold, and the SCL at which the issue counted modern ham as flagged.
QUARANTINE_SCL = 4

# A scorer returns (rank score, SCL); the rank score orders messages for the AUC.
Scorer = Callable[[bytes], tuple[float, int]]


@dataclass(frozen=True)
class SourceFigures:
    source: str
    is_spam: bool
    count: int
    at_reject: float
    at_near_reject: float
    at_quarantine: float
    roc_auc: float


def _auc(ham: list[float], spam: list[float]) -> float:
    from sklearn.metrics import roc_auc_score

    if not ham or not spam:
        return float("nan")
    return float(roc_auc_score([0] * len(ham) + [1] * len(spam), ham + spam))


def dev_report(sets: list[CorpusSet], scorer: Scorer) -> list[SourceFigures]:
    """Figures per dev set, in the order of ``sets``."""
    scored: dict[tuple[str, bool], list[tuple[float, int]]] = {}
    for item in sets:
        if item.split == "dev":
            scored[(item.source, item.is_spam)] = [scorer(raw) for _, raw, _ in item.messages]
    modern_ham = [s for (src, spam), v in scored.items() if src != "spamassassin" and not spam for s, _ in v]
    modern_spam = [s for (src, spam), v in scored.items() if src != "spamassassin" and spam for s, _ in v]
    sa_ham = [s for s, _ in scored.get(("spamassassin", False), [])]
    sa_spam = [s for s, _ in scored.get(("spamassassin", True), [])]
    figures: list[SourceFigures] = []
    for (source, is_spam), results in scored.items():
        ranks = [s for s, _ in results]
        if source == "spamassassin":
            auc = _auc(sa_ham, sa_spam)
        else:
            auc = _auc(modern_ham, ranks) if is_spam else _auc(ranks, modern_spam)
        n = max(1, len(results))
        figures.append(
            SourceFigures(
                source=source,
                is_spam=is_spam,
                count=len(results),
                at_reject=sum(scl >= REJECT_SCL for _, scl in results) / n,
                at_near_reject=sum(scl >= NEAR_REJECT_SCL for _, scl in results) / n,
                at_quarantine=sum(scl >= QUARANTINE_SCL for _, scl in results) / n,
                roc_auc=auc,
            )
        )
    return figures
