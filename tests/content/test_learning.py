"""Online learning into the state store, and the store's versioning."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.content import ModelStateStore, SpamClassifier, SqliteModelStateStore, StaleModelError

from .conftest import read


def _borderline() -> bytes:
    # Mostly ham-like text with a sales pitch: somewhere in the middle for the shipped model.
    return read("ham.eml").replace(
        b"Thanks,", b"Order our new service today, special offer for you.\nThanks,"
    )


def test_reported_spam_scores_higher_afterwards(tmp_path: Path) -> None:
    with SqliteModelStateStore(tmp_path / "state.db") as store:
        classifier = SpamClassifier.load(store=store)
        raw = _borderline()
        before = classifier.score(raw).probability
        classifier.learn(raw, is_spam=True)
        after = classifier.score(raw).probability
        assert after > before
        assert after > 0.5
        stored = store.get("default")
        assert stored is not None and stored.version == classifier.version >= 1
        # Another gateway sharing the store sees the learned model.
        assert SpamClassifier.load(store=store).score(raw).probability == pytest.approx(after, abs=1e-3)


def test_reported_ham_scores_lower_afterwards() -> None:
    classifier = SpamClassifier.load()
    raw = read("spam.eml")
    before = classifier.score(raw).probability
    classifier.learn(raw, is_spam=False)
    assert classifier.score(raw).probability < before


def test_learning_can_be_switched_off(tmp_path: Path) -> None:
    with SqliteModelStateStore(tmp_path / "state.db") as store:
        classifier = SpamClassifier.load(store=store, learning=False)
        raw = _borderline()
        before = classifier.score(raw).probability
        classifier.learn(raw, is_spam=True)
        assert classifier.score(raw).probability == before
        assert store.get("default") is None


def test_concurrent_writers_retry(tmp_path: Path) -> None:
    with SqliteModelStateStore(tmp_path / "state.db") as store:
        first = SpamClassifier.load(store=store)
        second = SpamClassifier.load(store=store)
        raw_a, raw_b = _borderline(), read("ham.eml").replace(b"Alice", b"Alice\nBuy cheap pills now")
        first.learn(raw_a, is_spam=True)
        second.learn(raw_b, is_spam=True)  # stale at version 0: re-reads, then writes version 2
        assert second.version == 2
        assert second.score(raw_a).probability > 0.5


def test_sqlite_store_versions(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    with SqliteModelStateStore(path) as store:
        assert isinstance(store, ModelStateStore)
        assert store.get("m") is None
        assert store.put("m", b"one", 0) == 1
        assert store.put("m", b"two", 1) == 2
        with pytest.raises(StaleModelError):
            store.put("m", b"late", 1)
        stored = store.get("m")
        assert stored is not None and (stored.blob, stored.version) == (b"two", 2)
    assert path.stat().st_mode & 0o777 == 0o600
    with SqliteModelStateStore(path) as reopened:
        assert reopened.get("m") is not None
