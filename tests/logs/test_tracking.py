"""The message tracking log: events written with a fixed clock, and searched back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from edgeward.config.schema import LoggingConfig
from edgeward.logs.tracking import TrackingEvent, TrackingLog, search

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class FixedClock:
    def __init__(self, when: datetime) -> None:
        self.t = when.timestamp()

    def now(self) -> float:
        return self.t


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    """A log with a small file size, so the search crosses rotated files."""
    clock = FixedClock(T0)
    log = TrackingLog(tmp_path, LoggingConfig(max_file_size=600), clock=clock)
    log.event(
        TrackingEvent.RECEIVE,
        msg_id="01A",
        message_id="<m1@example.org>",
        sender="Alice@Example.org",
        recipients=["bob@example.net", "carol@example.net"],
        client_ip="192.0.2.1",
        connector="default",
        size=2048,
        reply="250 2.0.0 queued as 01A",
    )
    clock.t += 3600
    log.event(
        "DEFER",
        msg_id="01A",
        sender="alice@example.org",
        recipients=["bob@example.net"],
        reply="451 4.4.1 Connection refused",
        next_hop="mx.example.net",
    )
    clock.t += 3600
    log.event(
        "SEND",
        msg_id="01A",
        sender="alice@example.org",
        recipients=["bob@example.net"],
        reply="250 ok",
        next_hop="mx.example.net",
    )
    log.event("RECEIVE", msg_id="01B", message_id="<m2@example.org>", sender="", recipients=["x@example.net"])
    log.close()
    return tmp_path


def test_entries_carry_every_field_and_utc_time(logdir: Path) -> None:
    first = json.loads((sorted(logdir.iterdir())[0]).read_text().splitlines()[0])
    assert first["time"] == "2024-05-01T12:00:00.000Z"
    assert first["event"] == "RECEIVE" and first["size"] == 2048
    assert set(first) >= {
        "msg_id",
        "message_id",
        "sender",
        "recipients",
        "client_ip",
        "connector",
        "reply",
        "detail",
        "next_hop",
    }


def test_the_log_was_rotated(logdir: Path) -> None:
    assert len(list(logdir.glob("tracking*.log"))) > 1


def test_search_by_queue_id_follows_the_message(logdir: Path) -> None:
    assert [e["event"] for e in search(logdir, msg_id="01A")] == ["RECEIVE", "DEFER", "SEND"]


def test_address_search_is_case_insensitive(logdir: Path) -> None:
    assert len(list(search(logdir, sender="ALICE@example.ORG"))) == 3
    assert [e["msg_id"] for e in search(logdir, recipient="Carol@Example.NET")] == ["01A"]
    assert list(search(logdir, recipient="nobody@example.net")) == []


def test_search_by_message_id_with_or_without_brackets(logdir: Path) -> None:
    assert [e["msg_id"] for e in search(logdir, message_id="m2@example.org")] == ["01B"]
    assert [e["msg_id"] for e in search(logdir, message_id="<m1@example.org>")] == ["01A"]


def test_search_by_time_window_and_event(logdir: Path) -> None:
    since = T0 + timedelta(minutes=30)
    assert [e["event"] for e in search(logdir, since=since)] == ["DEFER", "SEND", "RECEIVE"]
    assert [e["event"] for e in search(logdir, until=T0 + timedelta(hours=1))] == ["RECEIVE", "DEFER"]
    naive = datetime(2024, 5, 1, 13, 0)  # taken as UTC
    assert [e["event"] for e in search(logdir, since=naive, until=naive)] == ["DEFER"]
    plus2 = timezone(timedelta(hours=2))
    assert len(list(search(logdir, since=datetime(2024, 5, 1, 16, 0, tzinfo=plus2)))) == 2
    assert [e["msg_id"] for e in search(logdir, event="receive")] == ["01A", "01B"]
    assert [e["msg_id"] for e in search(logdir, event=TrackingEvent.SEND, sender="alice@example.org")] == [
        "01A"
    ]


def test_unknown_events_are_refused(tmp_path: Path) -> None:
    log = TrackingLog(tmp_path, LoggingConfig())
    with pytest.raises(ValueError):
        log.event("TELEPORT", msg_id="x")
    log.close()


def test_search_of_a_missing_folder_finds_nothing(tmp_path: Path) -> None:
    assert list(search(tmp_path / "none", msg_id="x")) == []
