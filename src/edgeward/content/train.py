"""Batch training of the content model from labelled raw messages.

This module owns :func:`train_model`: features for every message, an L2-regularised logistic
regression (scikit-learn, liblinear solver: deterministic, no random state involved in the fit),
then Platt calibration fitted on 5-fold out-of-fold scores of the training data (stratified folds
shuffled with a fixed seed), so the dev split stays untouched for evaluation and thresholds.

Why logistic regression plus a small naive-Bayes term, over hashed binary features: on the
SpamAssassin dev split, logistic regression alone had the best ROC AUC (0.9990) and recall at 1 %
FP of the candidates measured (MultinomialNB, SGDClassifier with log loss, LogisticRegression at
several C), token Bayes alone the best recall with no false positive; their sum with the Bayes
term scaled by :data:`BAYES_MIX` = 0.01 beat both on both (AUC 0.9993, recall at 0 FP 0.80 vs
0.67); see ``bench/README-spam.md``. The regularisation (:data:`DEFAULT_C` = 300) and hash
size (:data:`DEFAULT_BITS` = 20) were chosen by 5-fold cross-validation on the training split
(pooled out-of-fold ROC AUC 0.9978 and recall 0.920 at 0.15 % FP, against 0.9957 and 0.896 for
C = 30 over 2^18 slots); C = 1000 measured the same, so the choice sits on a plateau. With the
modern corpora (``edgeward spam train --corpora``) messages carry sample weights
(:data:`edgeward.content.corpora.MODERN_WEIGHT`, chosen the same way; ``docs/content-model.md``),
used by the regression, the Bayes term and the calibration alike. Words and facts are scaled
apart (:data:`DEFAULT_FACT_SCALE`, :mod:`edgeward.content.model`), and the calibration folds keep
near-duplicates (:func:`edgeward.content.corpora.group_keys`) in one fold, so a template resent
with a new date cannot score its twin "out of fold" and make the calibration over-confident;
both were chosen by the grouped cross-validation described in ``docs/content-model.md``. The
fitted weights are a plain vector, so online learning after deployment is an SGD step on that
vector (:meth:`LinearModel.learn`) and needs no scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import numpy.typing as npt
from scipy import sparse

from edgeward.content.analyze import analyze
from edgeward.content.corpora import group_keys, groups_of
from edgeward.content.model import LinearModel, feature_slots, vector_values

__all__ = [
    "DEFAULT_BITS",
    "DEFAULT_C",
    "DEFAULT_FACT_SCALE",
    "SEED",
    "features_matrix",
    "fit_platt",
    "train_model",
]

DEFAULT_BITS = 20
DEFAULT_C = 300.0
# The value of one fact in the message vector; a word is 1/sqrt(words). 0.1 is a fact worth a
# word of a 100-word message: cross-validated against 0.05, 0.3 and 1 (docs/content-model.md).
DEFAULT_FACT_SCALE = 0.1
BAYES_MIX = 0.01
BAYES_ALPHA = 0.1
SEED = 20260501


def _matrix(
    slot_lists: list[npt.NDArray[np.int64]],
    bits: int,
    fact_counts: list[int] | None = None,
    fact_scale: float | None = None,
) -> sparse.csr_matrix:
    indptr = np.zeros(len(slot_lists) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([s.size for s in slot_lists])
    indices = np.concatenate(slot_lists) if slot_lists else np.zeros(0, dtype=np.int64)
    counts = fact_counts or [0] * len(slot_lists)
    data = np.concatenate(
        [vector_values(s.size, n, fact_scale) for s, n in zip(slot_lists, counts, strict=True)]
    )
    # Two features in one slot add up, as LinearModel.raw_score sums them.
    matrix = sparse.csr_matrix((data, indices, indptr), shape=(len(slot_lists), 1 << bits))
    matrix.sum_duplicates()
    return matrix


def _fit(
    matrix: sparse.csr_matrix,
    labels: npt.NDArray[np.int8],
    c: float,
    weights: npt.NDArray[np.float64] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], float]:
    """(logistic weights, scaled Bayes log-likelihood ratios, bias) for the sum model."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import MultinomialNB

    model = LogisticRegression(C=c, solver="liblinear", max_iter=5000)
    model.fit(matrix, labels, sample_weight=weights)
    binary = (matrix > 0).astype(np.float64)
    bayes = MultinomialNB(alpha=BAYES_ALPHA).fit(binary, labels, sample_weight=weights)
    ratios = (bayes.feature_log_prob_[1] - bayes.feature_log_prob_[0]) * BAYES_MIX
    # Slots no training message used keep weight 0: unseen tokens are not evidence.
    ratios[np.asarray(binary.sum(axis=0)).ravel() == 0] = 0.0
    prior = float(bayes.class_log_prior_[1] - bayes.class_log_prior_[0]) * BAYES_MIX
    return (
        np.asarray(model.coef_[0], dtype=np.float32),
        ratios.astype(np.float32),
        float(model.intercept_[0]) + prior,
    )


def fit_platt(
    scores: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int8],
    weights: npt.NDArray[np.float64] | None = None,
) -> tuple[float, float]:
    """Platt scaling ``p = sigmoid(a*s + c)`` by a lightly regularised 1-D logistic fit."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1.0, solver="lbfgs")
    fit.fit(scores.reshape(-1, 1), labels, sample_weight=weights)
    return float(fit.coef_[0][0]), float(fit.intercept_[0])


def features_matrix(
    messages: Iterable[tuple[bytes, bool] | tuple[bytes, bool, float]],
    bits: int,
    progress: Callable[[], None] | None = None,
    fact_scale: float | None = DEFAULT_FACT_SCALE,
    keys: list[list[str]] | None = None,
) -> tuple[sparse.csr_matrix, npt.NDArray[np.int8], npt.NDArray[np.float64]]:
    """(hashed feature matrix, labels, sample weights) of ``(raw, is_spam[, weight])`` items;
    each message's near-duplicate keys are appended to ``keys`` when it is given."""
    slot_lists: list[npt.NDArray[np.int64]] = []
    fact_counts: list[int] = []
    label_list: list[int] = []
    weight_list: list[float] = []
    for item in messages:
        analysis = analyze(item[0])
        slot_lists.append(feature_slots(analysis.features, bits))
        fact_counts.append(analysis.fact_count)
        label_list.append(1 if item[1] else 0)
        weight_list.append(item[2] if len(item) == 3 else 1.0)
        if keys is not None:
            keys.append(group_keys(item[0]))
        if progress is not None:
            progress()
    return (
        _matrix(slot_lists, bits, fact_counts, fact_scale),
        np.asarray(label_list, dtype=np.int8),
        np.asarray(weight_list, dtype=np.float64),
    )


def _fold_groups(keys: list[list[str]]) -> npt.NDArray[np.int64]:
    labels = np.zeros(len(keys), dtype=np.int64)
    for number, members in enumerate(groups_of(keys)):
        labels[members] = number
    return labels


def train_model(
    messages: Iterable[tuple[bytes, bool] | tuple[bytes, bool, float]],
    *,
    bits: int = DEFAULT_BITS,
    c: float = DEFAULT_C,
    fact_scale: float | None = DEFAULT_FACT_SCALE,
    folds: int = 5,
    progress: Callable[[], None] | None = None,
) -> LinearModel:
    """Train a calibrated model from ``(raw, is_spam)`` pairs, or ``(raw, is_spam, weight)``
    triples where a message should count more or less than once; deterministic for the same input.
    ``fact_scale=None`` trains a one-block model (every feature scaled as a word)."""
    keys: list[list[str]] = []
    matrix, labels, sample_weights = features_matrix(messages, bits, progress, fact_scale, keys)
    if labels.size < 2 * folds or labels.min() == labels.max():
        raise ValueError(f"need at least {folds} ham and {folds} spam messages to train")
    uniform = bool((sample_weights == 1.0).all())
    sw = None if uniform else sample_weights
    weights, bayes, bias = _fit(matrix, labels, c, sw)
    binary = (matrix > 0).astype(np.float64)
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    out_of_fold = np.zeros(labels.size, dtype=np.float64)
    groups = _fold_groups(keys)
    if len(set(groups.tolist())) >= folds:
        grouped = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=SEED)
        splits = list(grouped.split(np.zeros(labels.size), labels, groups))
    else:  # a tiny training set of copies: nothing to keep apart
        plain = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
        splits = list(plain.split(np.zeros(labels.size), labels))
    for train_idx, test_idx in splits:
        fold_w, fold_v, fold_b = _fit(
            matrix[train_idx], labels[train_idx], c, None if sw is None else sw[train_idx]
        )
        out_of_fold[test_idx] = (
            matrix[test_idx] @ fold_w.astype(np.float64)
            + binary[test_idx] @ fold_v.astype(np.float64)
            + fold_b
        )
    platt_a, platt_c = fit_platt(out_of_fold, labels, sw)
    return LinearModel(
        bits, weights, bayes, bias=bias, platt_a=platt_a, platt_c=platt_c, fact_scale=fact_scale
    )
