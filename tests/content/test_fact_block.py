"""Words and facts on two scales: the model's score, learning and file format agree on them."""

from __future__ import annotations

import math

import numpy as np

from edgeward.content.analyze import analyze
from edgeward.content.model import FORMAT, LinearModel, feature_slots, vector_values
from edgeward.content.train import features_matrix

from .conftest import read


def test_facts_sit_last_and_are_counted() -> None:
    analysis = analyze(read("ham.eml"))
    facts = analysis.features[len(analysis.features) - analysis.fact_count :]
    words = analysis.features[: len(analysis.features) - analysis.fact_count]
    assert analysis.fact_count > 0
    assert all(f.startswith(("w:", "b:", "s:", "d:", "u:d:", "u:tld:")) for f in words)
    assert not any(f.startswith(("w:", "b:", "s:", "d:", "u:d:", "u:tld:")) for f in facts)


def test_a_fact_weighs_the_same_in_a_long_and_a_short_message() -> None:
    model = LinearModel.empty(bits=12, fact_scale=0.1)
    model.weights[7] = 2.0
    short = np.array([1, 2, 7], dtype=np.int64)
    long = np.concatenate([np.arange(100, 1100, dtype=np.int64), np.array([7])])
    # The fact's part of the score: 0.1 * 2.0, whatever the number of words before it.
    assert math.isclose(model.raw_score(short, facts=1), 0.2, rel_tol=1e-6)
    assert math.isclose(model.raw_score(long, facts=1), 0.2, rel_tol=1e-6)
    one_block = LinearModel.empty(bits=12)
    one_block.weights[7] = 2.0
    assert one_block.raw_score(long, facts=1) < 0.1  # the format-1 scaling this replaces


def test_training_matrix_rows_match_the_scoring_vector() -> None:
    raw = read("spam.eml")
    matrix, _, _ = features_matrix([(raw, True)], bits=16, fact_scale=0.1)
    analysis = analyze(raw)
    slots = feature_slots(analysis.features, 16)
    dense = np.zeros(1 << 16)
    np.add.at(dense, slots, vector_values(slots.size, analysis.fact_count, 0.1))
    assert np.allclose(matrix.toarray()[0], dense)


def test_learning_moves_a_two_block_message_to_the_told_side() -> None:
    model = LinearModel.empty(bits=14, fact_scale=0.1)
    analysis = analyze(read("ham.eml"))
    slots = feature_slots(analysis.features, 14)
    assert model.learn(slots, is_spam=True, facts=analysis.fact_count)
    # PA-I removes the whole hinge loss in one step: the message sits at the margin (a little
    # past it when two of its features share a slot, which then moves twice).
    assert model.raw_score(slots, analysis.fact_count) >= 1.0 - 1e-4
    assert not model.learn(slots, is_spam=True, facts=analysis.fact_count)


def test_file_round_trip_keeps_the_fact_scale_and_old_files_load() -> None:
    model = LinearModel.empty(bits=12, fact_scale=0.25)
    model.weights[3] = 1.5
    blob = model.to_bytes()
    loaded = LinearModel.from_bytes(blob)
    assert loaded.fact_scale == 0.25
    assert np.array_equal(loaded.weights, model.weights)
    assert FORMAT.endswith("/2")
    legacy = LinearModel.from_bytes(LinearModel.empty(bits=12).to_bytes())
    assert legacy.fact_scale is None
