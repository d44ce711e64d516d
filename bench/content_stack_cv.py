"""Grouped cross-validation of a second stage over the content model's facts (train split only).

Compares, by nested grouped 5-fold cross-validation on the training split of
``../shared/corpora`` (never the dev split):

* ``single``: today's model (``train.train_model``: logistic regression + Bayes term over hashed
  words and facts, Platt calibration on grouped out-of-fold scores);
* ``logistic``: a logistic second stage over the first stage's out-of-fold raw score and the
  fixed fact columns of :func:`fact_columns` (bucketed columns one-hot encoded);
* ``trees``: a small gradient-boosted tree model (``HistGradientBoostingClassifier``) over the
  same inputs;
* ``era``: either second stage with a column "modern mail" (1) or "SpamAssassin" (0) when it is
  fitted, and 1 for every message it scores (the running gateway scores today's mail).

Nested: for each outer fold, the first stage's raw score of the outer training part is its inner
out-of-fold score (the same ``StratifiedGroupKFold`` over ``corpora.group_keys`` groups that
``train_model`` uses), the second stage is fitted on it, and the outer test part is scored by a
first stage fitted on the whole outer training part, as a shipped model would score new mail. The
second stage's output is Platt-calibrated on its own inner out-of-fold output. Modern messages
carry ``MODERN_WEIGHT`` everywhere, as in the first stage. The table printed is the share of each
archive's messages at SCL >= 8 / 7 / 5 / 4 (p >= 0.98 / 0.86 / 0.35 / 0.20), the pooled modern
ROC AUC and the SpamAssassin ROC AUC, all out of fold.

    .venv/bin/python bench/content_stack_cv.py --corpora ../shared/corpora [--outer-seed N]
        [--variants NAME,...] [--json OUT] [--cache /tmp/features.pkl]

The results and why no second stage was adopted are in ``docs/content-model.md``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from edgeward.content.analyze import analyze
from edgeward.content.corpora import MODERN_WEIGHT, corpus_sets, group_keys, groups_of
from edgeward.content.model import feature_slots
from edgeward.content.train import (
    DEFAULT_BITS,
    DEFAULT_C,
    DEFAULT_FACT_SCALE,
    SEED,
    _fit,
    _matrix,
    fit_platt,
)

CUTS = (0.98, 0.86, 0.35, 0.20)
SOURCES = ("spamassassin", "abuse-desk-ham", "foff-milter-ham", "foff-milter-spam", "scam-archive-spam")

# --- the fixed fact columns --------------------------------------------------------------------

# Bucketed counts (the bucket number as an ordinal, -1 when the fact is absent).
BUCKETED = (
    "x:textlen", "u:count", "u:hosts", "u:domains", "m:parts", "h:text_ratio",
    "h:img", "h:form", "h:table", "h:font", "h:input", "h:iframe", "h:script", "h:a",
    "h:center", "h:b",
)  # fmt: skip
# Present or not.
BINARY = (
    "x:subject_caps", "x:subject_bangs", "x:subject_empty", "x:text_bangs",
    "u:ip", "u:punycode", "u:shortener",
    "h:html_only", "h:hidden_text", "h:tracking_pixel", "h:images_only",
    "x:NO_DATE", "x:NO_MESSAGE_ID", "x:MESSAGE_ID_MALFORMED", "x:IS_REPLY", "x:MIME_NO_VERSION",
    "x:HIGH_PRIORITY", "x:from_no_domain", "x:display_address_other_domain",
    "x:reply_to_other_domain", "x:reply_to_freemail_company_from",
    "k:list_unsubscribe", "k:one_click_unsubscribe", "k:feedback_id", "k:precedence:bulk",
    "k:precedence:list", "k:precedence:junk", "k:dkim_signature", "k:dkim_aligned",
    "k:dkim_unaligned",
    "p:PHISH_LINK_TEXT_MISMATCH", "p:PHISH_LOOKALIKE_DOMAIN", "p:PHISH_BRAND_DISPLAY_NAME",
    "p:PHISH_CREDENTIAL_FORM", "p:PHISH_URL_IP_LITERAL", "p:PHISH_URL_PUNYCODE",
    "p:PHISH_CREDENTIAL_WORDS", "p:PHISH_URGENCY", "p:PHISH_URL_USERINFO",
    "p:PHISH_REPLY_TO_OTHER_DOMAIN",
)  # fmt: skip
# Open-ended families, as "how many of them" (uncommon content types, charsets, attachment
# extensions, MIME and header anomalies).
FAMILIES = ("m:t:", "m:cs:", "m:att:", "m:MIME_", "m:HDR_")
COLUMNS = (*BUCKETED, *BINARY, *FAMILIES)
_BUCKET_INDEX = {name: i for i, name in enumerate(BUCKETED)}
_BINARY_INDEX = {name: len(BUCKETED) + i for i, name in enumerate(BINARY)}
_FAMILY_BASE = len(BUCKETED) + len(BINARY)


def fact_columns(facts: list[str] | tuple[str, ...]) -> np.ndarray:
    """The fixed columns of one message's fact block."""
    row = np.zeros(len(COLUMNS), dtype=np.float64)
    row[: len(BUCKETED)] = -1.0
    for fact in facts:
        index = _BINARY_INDEX.get(fact)
        if index is not None:
            row[index] = 1.0
            continue
        name, _, value = fact.rpartition(":")
        index = _BUCKET_INDEX.get(name)
        if index is not None and value.isdigit():
            row[index] = float(value)
            continue
        for number, prefix in enumerate(FAMILIES):
            if fact.startswith(prefix):
                row[_FAMILY_BASE + number] += 1.0
                break
    return row


# --- data ----------------------------------------------------------------------------------------


def load(root: Path, cache: Path | None) -> dict[str, Any]:
    if cache is not None and cache.exists():
        with cache.open("rb") as handle:
            # A file this script wrote itself (--cache): never point it at anything else.
            return pickle.load(handle)
    slots: list[np.ndarray] = []
    fact_counts: list[int] = []
    columns: list[np.ndarray] = []
    labels: list[int] = []
    weights: list[float] = []
    sources: list[str] = []
    keys: list[list[str]] = []
    for corpus in corpus_sets(root):
        if corpus.split != "train":
            continue
        for _, raw, spam in corpus.messages:
            analysis = analyze(raw)
            slots.append(feature_slots(analysis.features, DEFAULT_BITS))
            fact_counts.append(analysis.fact_count)
            columns.append(fact_columns(analysis.features[len(analysis.features) - analysis.fact_count :]))
            labels.append(1 if spam else 0)
            weights.append(1.0 if corpus.source == "spamassassin" else MODERN_WEIGHT)
            sources.append(corpus.source)
            keys.append(group_keys(raw))
    data = {
        "slots": slots,
        "fact_counts": fact_counts,
        "columns": np.vstack(columns),
        "labels": np.asarray(labels, dtype=np.int8),
        "weights": np.asarray(weights),
        "sources": np.asarray(sources),
        "keys": keys,
    }
    if cache is not None:
        with cache.open("wb") as handle:
            pickle.dump(data, handle)
    return data


def fold_groups(keys: list[list[str]]) -> np.ndarray:
    groups = np.zeros(len(keys), dtype=np.int64)
    for number, members in enumerate(groups_of(keys)):
        groups[members] = number
    return groups


def splits(
    keys: list[list[str]], labels: np.ndarray, seed: int = SEED
) -> list[tuple[np.ndarray, np.ndarray]]:
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros(labels.size), labels, fold_groups(keys)))


class FirstStage:
    def __init__(self, data: dict[str, Any]) -> None:
        self.matrix = _matrix(data["slots"], DEFAULT_BITS, data["fact_counts"], DEFAULT_FACT_SCALE)
        self.binary = (self.matrix > 0).astype(np.float64)
        self.labels = data["labels"]
        self.weights = data["weights"]

    def fit_score(self, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        w, v, b = _fit(self.matrix[train], self.labels[train], DEFAULT_C, self.weights[train])
        return np.asarray(
            self.matrix[test] @ w.astype(np.float64) + self.binary[test] @ v.astype(np.float64) + b
        )


# --- second stages -------------------------------------------------------------------------------


def one_hot(columns: np.ndarray) -> np.ndarray:
    """Bucketed columns as one indicator per bucket value (values -1..9), others as they are."""
    parts = []
    for index in range(len(BUCKETED)):
        values = np.clip(columns[:, index], -1, 9)
        parts.append(np.stack([(values == v).astype(np.float64) for v in range(-1, 10)], axis=1))
    parts.append(np.minimum(columns[:, len(BUCKETED) :], 3.0))
    return np.hstack(parts)


def make_stage(kind: str, params: dict[str, Any]) -> Any:
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=params.get("C", 1.0), solver="lbfgs", max_iter=5000)
    from sklearn.ensemble import HistGradientBoostingClassifier

    monotonic = np.zeros(1 + len(COLUMNS) + int(params.get("era", False)), dtype=np.int64)
    monotonic[0] = 1  # a higher text score never lowers the spam probability
    return HistGradientBoostingClassifier(
        learning_rate=params.get("lr", 0.05),
        max_iter=params.get("iters", 200),
        max_depth=params.get("depth", 3),
        max_leaf_nodes=params.get("leaves", 8),
        min_samples_leaf=params.get("min_leaf", 40),
        l2_regularization=params.get("l2", 1.0),
        early_stopping=False,
        monotonic_cst=monotonic.tolist() if params.get("monotonic", True) else None,
        random_state=0,
    )


def stage_inputs(
    kind: str, raw: np.ndarray, columns: np.ndarray, era: np.ndarray | None = None
) -> np.ndarray:
    """The second stage's inputs; ``era`` (1 modern, 0 SpamAssassin) is an extra column when
    given (in training only: every scored message is then given era 1, today's mail)."""
    extra = [] if era is None else [era.reshape(-1, 1).astype(np.float64)]
    if kind == "logistic":
        return np.hstack([raw.reshape(-1, 1) / 10.0, one_hot(columns), *extra])
    return np.hstack([raw.reshape(-1, 1), columns, *extra])


def stage_logit(model: Any, inputs: np.ndarray) -> np.ndarray:
    return np.asarray(model.decision_function(inputs), dtype=np.float64).ravel()


def fit_stage(
    kind: str,
    params: dict[str, Any],
    raw: np.ndarray,
    columns: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    inner: list[tuple[np.ndarray, np.ndarray]],
    era: np.ndarray,
) -> tuple[Any, float, float]:
    """(second stage on all rows, Platt a, c fitted on its inner out-of-fold logits)."""
    with_era = bool(params.get("era", False))
    inputs = stage_inputs(kind, raw, columns, era if with_era else None)
    scored = stage_inputs(kind, raw, columns, np.ones_like(era) if with_era else None)
    oof = np.zeros(labels.size)
    for train, test in inner:
        model = make_stage(kind, params).fit(inputs[train], labels[train], sample_weight=weights[train])
        oof[test] = stage_logit(model, scored[test])
    a, c = fit_platt(oof, labels, weights)
    return make_stage(kind, params).fit(inputs, labels, sample_weight=weights), a, c


def sigmoid(t: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-t)))


# --- the run -------------------------------------------------------------------------------------


def table(data: dict[str, Any], prob: np.ndarray) -> dict[str, Any]:
    labels, sources = data["labels"], data["sources"]
    out: dict[str, Any] = {}
    for source in SOURCES:
        for label in (0, 1):
            mask = (sources == source) & (labels == label)
            if mask.any():
                name = f"{source}:{'spam' if label else 'ham'}"
                out[name] = [float((prob[mask] >= cut).mean()) for cut in CUTS]
    modern = sources != "spamassassin"
    out["modern_auc"] = float(roc_auc_score(labels[modern], prob[modern]))
    out["sa_auc"] = float(roc_auc_score(labels[~modern], prob[~modern]))
    return out


def show(name: str, result: dict[str, Any]) -> None:
    cells = []
    for key, value in result.items():
        if isinstance(value, list):
            cells.append(f"{key}={'/'.join(f'{v:.3f}' for v in value)}")
    print(f"{name}: " + "  ".join(cells), f"modern AUC {result['modern_auc']:.4f}",
          f"SA AUC {result['sa_auc']:.5f}", flush=True)  # fmt: skip


VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "logistic C=1": ("logistic", {"C": 1.0}),
    "logistic C=0.1": ("logistic", {"C": 0.1}),
    "trees d3 l8 m40 200x0.05": ("trees", {}),
    "trees d2 l4 m80 200x0.05": ("trees", {"depth": 2, "leaves": 4, "min_leaf": 80}),
    "trees d3 l8 m40 100x0.05 l2=10": ("trees", {"iters": 100, "l2": 10.0}),
    "trees d4 l16 m20 300x0.05 free": (
        "trees",
        {"depth": 4, "leaves": 16, "min_leaf": 20, "iters": 300, "monotonic": False},
    ),
    "trees d3 l8 m40 200x0.05 era": ("trees", {"era": True}),
    "logistic C=0.1 era": ("logistic", {"C": 0.1, "era": True}),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--variants", default="all", help="comma-separated names, or all")
    parser.add_argument(
        "--outer-seed", type=int, default=SEED, help="seed of the outer folds (inner: the trainer's)"
    )
    args = parser.parse_args()
    start = time.process_time()
    data = load(args.corpora, args.cache)
    print(f"{data['labels'].size} train messages, {len(COLUMNS)} fact columns "
          f"({time.process_time() - start:.0f} CPU-s)", flush=True)  # fmt: skip
    first = FirstStage(data)
    labels, weights, columns, keys = data["labels"], data["weights"], data["columns"], data["keys"]
    era = (data["sources"] != "spamassassin").astype(np.float64)
    chosen = VARIANTS if args.variants == "all" else {k: VARIANTS[k] for k in args.variants.split(",")}
    probs = {name: np.zeros(labels.size) for name in ["single", *chosen]}
    for number, (outer_train, outer_test) in enumerate(splits(keys, labels, args.outer_seed)):
        sub_keys = [keys[i] for i in outer_train]
        inner = splits(sub_keys, labels[outer_train])
        inner_raw = np.zeros(outer_train.size)
        for train, test in inner:
            inner_raw[test] = first.fit_score(outer_train[train], outer_train[test])
        test_raw = first.fit_score(outer_train, outer_test)
        # Today's model: Platt on the inner out-of-fold raw scores.
        a, c = fit_platt(inner_raw, labels[outer_train], weights[outer_train])
        probs["single"][outer_test] = sigmoid(a * test_raw + c)
        for name, (kind, params) in chosen.items():
            model, a, c = fit_stage(
                kind, params, inner_raw, columns[outer_train], labels[outer_train],
                weights[outer_train], inner, era[outer_train],
            )  # fmt: skip
            test_era = np.ones(outer_test.size) if params.get("era", False) else None
            logit = stage_logit(model, stage_inputs(kind, test_raw, columns[outer_test], test_era))
            probs[name][outer_test] = sigmoid(a * logit + c)
        print(f"outer fold {number + 1}/5 done ({time.process_time() - start:.0f} CPU-s)", flush=True)
    results = {name: table(data, prob) for name, prob in probs.items()}
    for name, result in results.items():
        show(name, result)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
