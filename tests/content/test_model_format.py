"""The model file format: round trip, validation, deterministic training."""

from __future__ import annotations

import io

import numpy as np
import pytest

from edgeward.content.model import LinearModel, ModelFormatError, hash_features
from edgeward.content.train import train_model

from .conftest import read


def test_round_trip() -> None:
    model = LinearModel.empty(bits=12)
    model.weights[[1, 5, 4095]] = [0.5, -2.0, 3.25]
    model.bayes[[5, 7]] = [0.125, -0.25]
    model.bias, model.platt_a, model.platt_c = -1.5, 1.2, 0.3
    loaded = LinearModel.from_bytes(model.to_bytes())
    assert np.array_equal(loaded.weights, model.weights)
    assert np.array_equal(loaded.bayes, model.bayes)
    assert (loaded.bias, loaded.platt_a, loaded.platt_c) == (-1.5, 1.2, 0.3)


@pytest.mark.parametrize("blob", [b"", b"not a zip", b"PK\x03\x04garbage"])
def test_garbage_is_rejected(blob: bytes) -> None:
    with pytest.raises(ModelFormatError):
        LinearModel.from_bytes(blob)


def test_pickled_objects_are_refused() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array([{"format": "x"}], dtype=object), index=np.zeros(1), value=np.zeros(1))
    with pytest.raises(ModelFormatError):
        LinearModel.from_bytes(buffer.getvalue())


def test_out_of_range_index_is_rejected() -> None:
    model = LinearModel.empty(bits=12)
    model.weights[3] = 1.0
    blob = model.to_bytes()
    with np.load(io.BytesIO(blob)) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["index"] = np.array([1 << 20], dtype=np.int32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with pytest.raises(ModelFormatError, match="out of range"):
        LinearModel.from_bytes(buffer.getvalue())


def test_hashing_is_order_independent() -> None:
    assert np.array_equal(hash_features(["a", "b", "c"], 18), hash_features(["c", "a", "b"], 18))


def test_training_is_deterministic() -> None:
    ham, spam = read("ham.eml"), read("spam.eml")
    messages = [(ham.replace(b"Alice", f"Alice {i}".encode()), False) for i in range(6)]
    messages += [(spam.replace(b"Friend", f"Friend {i}".encode()), True) for i in range(6)]
    first = train_model(messages, bits=14, folds=3)
    second = train_model(list(reversed(messages)), bits=14, folds=3)
    assert first.to_bytes() == train_model(messages, bits=14, folds=3).to_bytes()
    assert np.allclose(first.weights, second.weights, atol=1e-4)


def test_training_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="ham and"):
        train_model([(read("ham.eml"), False)] * 10, bits=12)
