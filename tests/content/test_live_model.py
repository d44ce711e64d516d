"""A running classifier follows what other processes teach the shared model, without a restart."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from edgeward.content import SpamClassifier, SqliteModelStateStore
from edgeward.content.state import StoredModel
from edgeward.testing.clock import FakeClock

from .conftest import read


def _live(store: SqliteModelStateStore, clock: FakeClock, interval: float) -> SpamClassifier:
    base = SpamClassifier.load(store=store)
    return SpamClassifier(
        base.model, store=store, version=base.version, refresh_interval=interval, clock=clock
    )


def test_a_model_taught_elsewhere_is_picked_up_within_the_interval(tmp_path: Path) -> None:
    raw = read("ham.eml")
    clock = FakeClock()
    path = tmp_path / "m.db"
    with SqliteModelStateStore(path) as gateway_store, SqliteModelStateStore(path) as cli:
        gateway = _live(gateway_store, clock, interval=5.0)
        before = gateway.score(raw).probability
        teacher = SpamClassifier.load(store=cli)  # as 'edgeward spam learn' in another process
        teacher.learn(raw, is_spam=True)
        taught = teacher.score(raw).probability
        assert taught > before

        clock.advance(4.9)
        assert gateway.refresh_if_due() is False  # not asked yet: at most once per interval
        assert gateway.score(raw).probability == before
        clock.advance(0.1)
        assert gateway.refresh_if_due() is True
        assert gateway.version == teacher.version
        assert gateway.score(raw).probability == pytest.approx(taught)
        clock.advance(5.0)
        assert gateway.refresh_if_due() is False  # asked again, nothing new


def test_without_an_interval_the_model_is_fixed(tmp_path: Path) -> None:
    with SqliteModelStateStore(tmp_path / "m.db") as store:
        classifier = SpamClassifier.load(store=store)
        SpamClassifier.load(store=store).learn(read("spam.eml"), is_spam=False)
        assert classifier.refresh_if_due() is False and classifier.version == 0


class BrokenStore:
    """A store whose file went away or is locked beyond the timeout."""

    def get(self, name: str) -> StoredModel | None:
        raise sqlite3.OperationalError("database is locked")

    def put(self, name: str, blob: bytes, expected_version: int) -> int:
        raise sqlite3.OperationalError("database is locked")

    def version(self, name: str) -> int:
        raise sqlite3.OperationalError("database is locked")


def test_an_unreadable_store_keeps_the_current_model(caplog: pytest.LogCaptureFixture) -> None:
    shipped = SpamClassifier.load(learning=False)
    clock = FakeClock()
    classifier = SpamClassifier(shipped.model, store=BrokenStore(), refresh_interval=0.0, clock=clock)
    raw = read("ham.eml")
    with caplog.at_level(logging.WARNING, logger="edgeward.content"):
        assert classifier.refresh_if_due() is False
    assert "database is locked" in caplog.text
    assert classifier.score(raw).probability == shipped.score(raw).probability
