"""The hashed linear model: weights, calibration, online learning, and its safe file format.

This module owns :class:`LinearModel`, a linear model over hashed binary features. Each feature
string is hashed with CRC-32 (stable across processes, unlike ``hash()``) into ``2**bits`` slots.
The raw score has two linear parts over the same slots ``S`` of a message::

    z = sum(w[S]) / sqrt(|S|)  +  sum(v[S])  +  b

``w`` is a logistic regression on the unit-length vector (long and short messages on one scale);
in a model with a ``fact_scale`` (format 2) only the word block of ``S`` is normalised so, and
each feature of the fact block (:class:`edgeward.content.features.Features`) enters with the
constant ``fact_scale`` instead::

    z = sum(w[S_words]) / sqrt(|S_words|)  +  fact_scale * sum(w[S_facts])  +  sum(v[S])  +  b

Why: divided by the square root of a newsletter's 1500 distinct words, a fact such as an aligned
DKIM signature or a one-click unsubscribe was worth a fifth of what it is worth in a short note,
so the facts that separate today's bulk mail from spam were drowned by its wording.
``v`` is a small multiple of naive-Bayes log-likelihood ratios on the unscaled vector, which adds
the "many weak tokens" evidence that a linear model regularises away (measured: it lifts recall at
very low false-positive rates). ``z`` is calibrated by Platt scaling (``p = sigmoid(a*z + c)``)
fitted on out-of-fold training scores.

Online learning (:meth:`LinearModel.learn`) is a passive-aggressive step (Crammer et al., 2006)
on the logistic weights: one report moves that message, and its near-duplicates, to the told side
of the decision boundary with a margin.

Security: models are stored as NumPy ``.npz`` with ``allow_pickle=False`` plus a JSON header, so
loading a model file can never execute code; shapes and values are validated on load.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["FORMAT", "LinearModel", "ModelFormatError", "feature_slots", "hash_features", "vector_values"]

FORMAT = "edgeward-content-linear/2"
# Format 1 had one block (every feature normalised with the words); such files still load.
_FORMATS = (FORMAT, "edgeward-content-linear/1")
MAX_LEARN_STEP = 20.0
LEARN_MARGIN = 1.0


class ModelFormatError(ValueError):
    """A model blob is not a valid Edgeward content model."""


def feature_slots(features: Iterable[str], bits: int) -> npt.NDArray[np.int64]:
    """The slot of each feature, in input order (two features may share a slot)."""
    items = features if isinstance(features, list | tuple) else list(features)
    try:
        # Fast path (C-level map); parsed text never holds lone surrogates, but be safe.
        crcs = np.fromiter(map(zlib.crc32, map(str.encode, items)), dtype=np.int64, count=len(items))
    except UnicodeEncodeError:
        crcs = np.fromiter(
            (zlib.crc32(f.encode("utf-8", "surrogatepass")) for f in items), dtype=np.int64, count=len(items)
        )
    return crcs & ((1 << bits) - 1)


def vector_values(size: int, facts: int, fact_scale: float | None) -> npt.NDArray[np.float64]:
    """The message vector's value for each of ``size`` features whose last ``facts`` are the
    fact block: ``1/sqrt(words)`` for a word, ``fact_scale`` for a fact (one block without it)."""
    if fact_scale is None or not facts:
        return np.full(size, 1.0 / math.sqrt(max(1, size)))
    values = np.full(size, fact_scale)
    words = size - facts
    values[:words] = 1.0 / math.sqrt(max(1, words))
    return values


def hash_features(features: Iterable[str], bits: int) -> npt.NDArray[np.int64]:
    """Unique slot indices for ``features``, sorted (independent of input order)."""
    return np.unique(feature_slots(features, bits))


@dataclass
class LinearModel:
    """Weights over ``2**bits`` hashed slots, a bias, and Platt calibration ``(a, c)``.

    ``fact_scale`` is the constant of the fact block; ``None`` (a format-1 model) scores every
    feature as a word. Methods taking ``slots`` take ``facts``: how many of the last slots are
    the fact block (``Analysis.fact_count``).
    """

    bits: int
    weights: npt.NDArray[np.float32]
    bayes: npt.NDArray[np.float32]
    bias: float = 0.0
    platt_a: float = 1.0
    platt_c: float = 0.0
    learned: int = 0
    fact_scale: float | None = None

    @classmethod
    def empty(cls, bits: int = 20, fact_scale: float | None = None) -> LinearModel:
        zeros = np.zeros(1 << bits, dtype=np.float32)
        return cls(bits, zeros, zeros.copy(), fact_scale=fact_scale)

    def coefficients(self, size: int, facts: int = 0) -> npt.NDArray[np.float64]:
        """The value of each of ``size`` features in the message vector the weights multiply."""
        return vector_values(size, facts, self.fact_scale)

    def raw_score(self, slots: npt.NDArray[np.int64], facts: int = 0) -> float:
        """``z`` for a message given the slot of each of its distinct features."""
        if slots.size == 0:
            return self.bias
        if self.fact_scale is None or not facts:
            linear = float(self.weights[slots].sum(dtype=np.float64)) / math.sqrt(slots.size)
        else:
            words = slots.size - facts
            text = float(self.weights[slots[:words]].sum(dtype=np.float64)) / math.sqrt(max(1, words))
            linear = text + self.fact_scale * float(self.weights[slots[words:]].sum(dtype=np.float64))
        return linear + float(self.bayes[slots].sum(dtype=np.float64)) + self.bias

    def probability(self, raw: float) -> float:
        t = self.platt_a * raw + self.platt_c
        # Split on sign to avoid overflow in exp for extreme scores.
        if t >= 0:
            return 1.0 / (1.0 + math.exp(-t))
        e = math.exp(t)
        return e / (1.0 + e)

    def learn(self, slots: npt.NDArray[np.int64], is_spam: bool, facts: int = 0) -> bool:
        """Passive-aggressive update (PA-I) on one message; True if the weights changed.

        The hinge loss ``max(0, LEARN_MARGIN - y*z)`` is removed in one step along the message's
        own vector ``x``, so afterwards the message sits :data:`LEARN_MARGIN` on the told side of
        the boundary; the step is capped at :data:`MAX_LEARN_STEP` so a single report cannot
        swamp what the corpus taught. The Bayes part and the bias are left as trained: they encode
        the corpus statistics and base rate, not this message.
        """
        if slots.size == 0:
            return False
        sign = 1.0 if is_spam else -1.0
        loss = LEARN_MARGIN - sign * self.raw_score(slots, facts)
        if loss <= 0.0:
            return False
        values = self.coefficients(slots.size, facts)
        step = min(MAX_LEARN_STEP, loss / float(values @ values))
        # np.add.at, not fancy-index "+=": a slot shared by two features gets both updates.
        np.add.at(self.weights, slots, (sign * step * values).astype(np.float32))
        self.learned += 1
        return True

    def contributions(self, slots: npt.NDArray[np.int64], facts: int = 0) -> npt.NDArray[np.float32]:
        """Per-feature contribution to the raw score (same order as ``slots``)."""
        if slots.size == 0:
            return np.zeros(0, dtype=np.float32)
        values = self.coefficients(slots.size, facts).astype(np.float32)
        return self.weights[slots] * values + self.bayes[slots]

    # --- persistence -------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        meta = {
            "format": FORMAT if self.fact_scale is not None else _FORMATS[1],
            "bits": self.bits,
            "bias": self.bias,
            "platt_a": self.platt_a,
            "platt_c": self.platt_c,
            "learned": self.learned,
        }
        if self.fact_scale is not None:
            meta["fact_scale"] = self.fact_scale
        nonzero = np.flatnonzero((self.weights != 0) | (self.bayes != 0)).astype(np.int32)
        buffer = io.BytesIO()
        # Sparse storage: most hashed slots are never used, which keeps the shipped model small.
        np.savez_compressed(
            buffer,
            meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8),
            index=nonzero,
            value=self.weights[nonzero],
            bayes=self.bayes[nonzero].astype(np.float16),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> LinearModel:
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                index = np.asarray(data["index"], dtype=np.int64)
                value = np.asarray(data["value"], dtype=np.float32)
                bayes_value = np.asarray(data["bayes"], dtype=np.float32)
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise ModelFormatError(f"not a content model: {exc}") from exc
        try:
            return cls._validated(meta, index, value, bayes_value)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ModelFormatError):
                raise
            raise ModelFormatError(f"invalid content model metadata: {exc}") from exc

    @classmethod
    def _validated(
        cls,
        meta: object,
        index: npt.NDArray[np.int64],
        value: npt.NDArray[np.float32],
        bayes_value: npt.NDArray[np.float32],
    ) -> LinearModel:
        if not isinstance(meta, dict) or meta.get("format") not in _FORMATS:
            raise ModelFormatError("unknown content model format")
        bits = int(meta["bits"])
        if not 8 <= bits <= 24 or index.shape != value.shape or index.shape != bayes_value.shape:
            raise ModelFormatError("content model has inconsistent shapes")
        if index.size and (index.min() < 0 or index.max() >= (1 << bits)):
            raise ModelFormatError("content model index out of range")
        if index.ndim != 1 or not (np.all(np.isfinite(value)) and np.all(np.isfinite(bayes_value))):
            raise ModelFormatError("content model has non-finite weights")
        weights = np.zeros(1 << bits, dtype=np.float32)
        weights[index] = value
        bayes = np.zeros(1 << bits, dtype=np.float32)
        bayes[index] = bayes_value
        numbers = [float(meta[k]) for k in ("bias", "platt_a", "platt_c")]
        fact_scale = None if meta.get("fact_scale") is None else float(meta["fact_scale"])
        if meta["format"] == FORMAT and fact_scale is None:
            raise ModelFormatError("content model lacks its fact scale")
        if not all(math.isfinite(x) for x in [*numbers, fact_scale or 0.0]):
            raise ModelFormatError("content model has non-finite parameters")
        learned = int(meta.get("learned", 0))
        return cls(bits, weights, bayes, numbers[0], numbers[1], numbers[2], learned, fact_scale)
