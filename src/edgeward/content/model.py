"""The hashed linear model: weights, calibration, online learning, and its safe file format.

This module owns :class:`LinearModel`, a linear model over hashed binary features. Each feature
string is hashed with CRC-32 (stable across processes, unlike ``hash()``) into ``2**bits`` slots.
The raw score has two linear parts over the same slots ``S`` of a message::

    z = sum(w[S]) / sqrt(|S|)  +  sum(v[S])  +  b

``w`` is a logistic regression on the unit-length vector (long and short messages on one scale);
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

__all__ = ["FORMAT", "LinearModel", "ModelFormatError", "feature_slots", "hash_features"]

FORMAT = "edgeward-content-linear/1"
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


def hash_features(features: Iterable[str], bits: int) -> npt.NDArray[np.int64]:
    """Unique slot indices for ``features``, sorted (independent of input order)."""
    return np.unique(feature_slots(features, bits))


@dataclass
class LinearModel:
    """Weights over ``2**bits`` hashed slots, a bias, and Platt calibration ``(a, c)``."""

    bits: int
    weights: npt.NDArray[np.float32]
    bayes: npt.NDArray[np.float32]
    bias: float = 0.0
    platt_a: float = 1.0
    platt_c: float = 0.0
    learned: int = 0

    @classmethod
    def empty(cls, bits: int = 20) -> LinearModel:
        return cls(bits, np.zeros(1 << bits, dtype=np.float32), np.zeros(1 << bits, dtype=np.float32))

    def raw_score(self, slots: npt.NDArray[np.int64]) -> float:
        """``z`` for a message given the slot of each of its distinct features."""
        if slots.size == 0:
            return self.bias
        linear = float(self.weights[slots].sum(dtype=np.float64)) / math.sqrt(slots.size)
        return linear + float(self.bayes[slots].sum(dtype=np.float64)) + self.bias

    def probability(self, raw: float) -> float:
        t = self.platt_a * raw + self.platt_c
        # Split on sign to avoid overflow in exp for extreme scores.
        if t >= 0:
            return 1.0 / (1.0 + math.exp(-t))
        e = math.exp(t)
        return e / (1.0 + e)

    def learn(self, slots: npt.NDArray[np.int64], is_spam: bool) -> bool:
        """Passive-aggressive update (PA-I) on one message; True if the weights changed.

        The hinge loss ``max(0, LEARN_MARGIN - y*z)`` is removed in one step along the message's
        own unit vector, so afterwards the message sits :data:`LEARN_MARGIN` on the told side of
        the boundary; the step is capped at :data:`MAX_LEARN_STEP` so a single report cannot
        swamp what the corpus taught. The Bayes part and the bias are left as trained: they encode
        the corpus statistics and base rate, not this message.
        """
        if slots.size == 0:
            return False
        sign = 1.0 if is_spam else -1.0
        loss = LEARN_MARGIN - sign * self.raw_score(slots)
        if loss <= 0.0:
            return False
        step = min(MAX_LEARN_STEP, loss)  # ||x||^2 == 1 for the unit-length vector
        # np.add.at, not fancy-index "+=": a slot shared by two features gets both updates.
        np.add.at(self.weights, slots, np.float32(sign * step / math.sqrt(slots.size)))
        self.learned += 1
        return True

    def contributions(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Per-feature contribution to the raw score (same order as ``slots``)."""
        if slots.size == 0:
            return np.zeros(0, dtype=np.float32)
        return self.weights[slots] * np.float32(1.0 / math.sqrt(slots.size)) + self.bayes[slots]

    # --- persistence -------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        meta = {
            "format": FORMAT,
            "bits": self.bits,
            "bias": self.bias,
            "platt_a": self.platt_a,
            "platt_c": self.platt_c,
            "learned": self.learned,
        }
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
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
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
        if not all(math.isfinite(x) for x in numbers):
            raise ModelFormatError("content model has non-finite parameters")
        return cls(bits, weights, bayes, numbers[0], numbers[1], numbers[2], int(meta.get("learned", 0)))
