"""The incremental tracking-log aggregator, on lines written by the project's own TrackingLog
writers (gateway, delivery and administrators' files) and a clock the tests move."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgeward.config.schema import LoggingConfig
from edgeward.logs.rotating import log_files
from edgeward.logs.stats import CAP, OTHER, TrackingStats
from edgeward.logs.tracking import ADMIN_LOG_NAME, DELIVERY_LOG_NAME, LOG_NAME, TrackingLog
from edgeward.testing.clock import FakeClock
from edgeward.types import Finding

T0 = 1_767_225_600.0 + 12 * 3600  # 2026-01-01T12:00:00Z
AV = Finding("AV_INFECTED", "antivirus", "engine=clamd signature=Eicar-Test-Signature path=/1/eicar.com", 0.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def writer(folder: Path, clock: FakeClock, name: str = LOG_NAME, size: int = 10_000_000) -> TrackingLog:
    return TrackingLog(folder, LoggingConfig(max_file_size=size), clock=clock, name=name)


def stats_of(folder: Path, clock: FakeClock) -> TrackingStats:
    return TrackingStats(folder, now=clock.now)


def receive(
    log: TrackingLog, n: int, ip: str = "192.0.2.1", sender: str = "a@Remote.TEST", scl: int = 1
) -> None:
    found = [Finding(f"SCL_{scl}", "content", "p=0.1", scl)]
    log.event("RECEIVE", msg_id=f"m{n}", sender=sender, recipients=["u@example.test"], client_ip=ip,
              findings=found, decided_by="no threshold")  # fmt: skip


def test_every_figure_is_drawn_from_the_three_files(tmp_path: Path, clock: FakeClock) -> None:
    gateway, delivery, admin = (
        writer(tmp_path, clock, n) for n in (LOG_NAME, DELIVERY_LOG_NAME, ADMIN_LOG_NAME)
    )
    receive(gateway, 1, scl=1)
    receive(gateway, 2, ip="198.51.100.9", sender="b@other.test", scl=1)
    receive(gateway, 3, scl=4)
    gateway.event("QUARANTINE", msg_id="m4", sender="s@spam.test", client_ip="203.0.113.5",
                  findings=[Finding("SCL_8", "content", "", 8)],
                  decided_by="threshold quarantine 7")  # fmt: skip
    gateway.event("REJECT", msg_id="m5", sender="v@virus.test", client_ip="203.0.113.5", detail="at EOD",
                  findings=[AV], decided_by="agent antivirus")  # fmt: skip
    gateway.event("REJECT", msg_id="", sender="x@relay.test", client_ip="203.0.113.5",
                  findings=[Finding("RCPT_RELAY_DENIED", "recipients")],
                  decided_by="agent recipients")  # fmt: skip
    gateway.event(
        "REJECT", msg_id="", client_ip="203.0.113.6", detail="at HELO"
    )  # no verdict: the session's own
    for event in ("SEND", "SEND", "DELIVER", "DEFER", "FAIL"):
        delivery.event(event, msg_id="m1", sender="a@remote.test", client_ip="192.0.2.1")
    admin.event("RELEASE", msg_id="m4", detail="by admin (web console)")
    for log in (gateway, delivery, admin):
        log.close()

    stats = stats_of(tmp_path, clock)
    stats.refresh()
    snap = stats.snapshot("hour")
    assert snap.totals == {"received": 3, "delivered": 3, "rejected": 3, "quarantined": 1, "deferred": 1,
                           "bounced": 1}  # fmt: skip
    assert snap.scl == [0, 2, 0, 0, 1, 0, 0, 0, 1, 0]
    assert snap.av == [("AV_INFECTED", "Eicar-Test-Signature", 1)]
    assert dict(snap.rejected_by_agent) == {"agent antivirus": 1, "agent recipients": 1, "(unknown)": 1}
    assert dict(snap.rejected_by_finding) == {"AV_INFECTED": 1, "RCPT_RELAY_DENIED": 1}
    # Inbound events only: delivery's lines repeat the client and must not count it twice.
    assert snap.top_ips[0] == ("203.0.113.5", 3) and dict(snap.top_ips)["192.0.2.1"] == 2
    assert dict(snap.top_domains) == {"remote.test": 2, "other.test": 1, "spam.test": 1, "virus.test": 1,
                                      "relay.test": 1}  # fmt: skip
    assert stats.totals()["RELEASE"] == 1 and stats.totals()["SEND"] == 2
    assert snap.damaged_lines == 0


def test_the_first_read_can_run_in_the_background(tmp_path: Path, clock: FakeClock) -> None:
    log = writer(tmp_path, clock)
    for n in range(20):
        receive(log, n)
    log.close()
    stats = stats_of(tmp_path, clock)
    stats.refresh_in_background().join(timeout=60)
    assert stats.totals() == {"RECEIVE": 20}
    stats.refresh()
    assert stats.totals() == {"RECEIVE": 20}


def test_a_second_read_takes_only_what_was_appended(tmp_path: Path, clock: FakeClock) -> None:
    log = writer(tmp_path, clock)
    for n in range(50):
        receive(log, n)
    stats = stats_of(tmp_path, clock)
    stats.refresh()
    first = stats.bytes_read
    assert first == (tmp_path / "tracking.log").stat().st_size
    stats.refresh()
    assert stats.bytes_read == first  # nothing new, nothing read
    for n in range(50, 53):
        receive(log, n)
    log.close()
    stats.refresh()
    assert stats.bytes_read == (tmp_path / "tracking.log").stat().st_size
    assert stats.snapshot("hour").totals["received"] == 53 and stats.totals()["RECEIVE"] == 53


def test_rotation_loses_and_repeats_nothing_and_truncation_starts_again(
    tmp_path: Path, clock: FakeClock
) -> None:
    log = writer(tmp_path, clock, size=2000)  # a few lines per file
    stats = stats_of(tmp_path, clock)
    for n in range(120):
        receive(log, n)
        clock.advance(1)
        if n % 7 == 0:
            stats.refresh()  # between rotations, and sometimes in the middle of a file
    log.close()
    assert len(log_files(tmp_path, LOG_NAME)) > 10
    stats.refresh()
    assert stats.totals()["RECEIVE"] == 120 and stats.snapshot("hour").totals["received"] == 120

    current = tmp_path / "tracking.log"
    os.truncate(current, 0)  # as a log tool's copytruncate would
    log = writer(tmp_path, clock)
    receive(log, 500)
    log.close()
    stats.refresh()
    assert stats.totals()["RECEIVE"] == 121

    for path, rotated in log_files(tmp_path, LOG_NAME):
        if rotated is not None:
            path.unlink()  # pruned by max_age: forgotten, the figures already folded stay
    stats.refresh()
    assert stats.totals()["RECEIVE"] == 121


def test_a_file_renamed_behind_the_listing_is_read_on_under_its_new_name(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = writer(tmp_path, clock)
    for n in range(10):
        receive(log, n)
    stats = stats_of(tmp_path, clock)
    stats.refresh()
    for n in range(10, 15):
        receive(log, n)  # written to the old file after the first read
    log.close()
    (tmp_path / "tracking.log").rename(tmp_path / "tracking-20260101T120000000000Z.log")
    log = writer(tmp_path, clock)
    receive(log, 99)
    log.close()
    # The listing was taken before the rename: it names only the current file (the new one).
    real = log_files
    monkeypatch.setattr("edgeward.logs.stats.log_files", lambda d, n: [x for x in real(d, n) if x[1] is None])
    stats.refresh()
    assert stats.totals()["RECEIVE"] == 11
    monkeypatch.undo()
    stats.refresh()
    assert stats.totals()["RECEIVE"] == 16


def test_damaged_lines_are_counted_and_a_torn_line_waits_for_its_end(
    tmp_path: Path, clock: FakeClock
) -> None:
    log = writer(tmp_path, clock)
    receive(log, 1)
    log.close()
    path = tmp_path / "tracking.log"
    with path.open("ab") as fh:
        fh.write(b"not json\n[1, 2]\n" + json.dumps({"event": "RECEIVE"}).encode() + b"\n\xff\xfe\n")
        fh.write(json.dumps({"event": "RECEIVE", "time": "yesterday"}).encode() + b"\n")
        fh.write(
            json.dumps({"event": "NOPE", "time": "2026-01-01T12:00:00.000Z"}).encode() + b"\n"
        )  # no kind
        fh.write(b'{"time":"2026-01-01T12:00:00.000Z","event":"REC')  # the writer was cut off here
    stats = stats_of(tmp_path, clock)
    stats.refresh()
    assert stats.damaged == 5 and stats.totals() == {"RECEIVE": 1}
    with path.open("ab") as fh:
        fh.write(b'EIVE","client_ip":"192.0.2.9"}\n')
    stats.refresh()
    assert stats.damaged == 5 and stats.totals() == {"RECEIVE": 2}
    assert ("192.0.2.9", 1) in stats.snapshot("hour").top_ips


def test_windows_buckets_and_the_week_limit(tmp_path: Path, clock: FakeClock) -> None:
    log = writer(tmp_path, clock)
    ages = [8 * 86400, 3 * 86400, 5 * 3600, 30 * 60, 61, 0]  # seconds before T0
    for n, age in enumerate(ages):
        clock.set(T0 - age)
        receive(log, n, ip=f"192.0.2.{n}")
    log.close()
    clock.set(T0 + 30)
    stats = stats_of(tmp_path, clock)
    stats.refresh()
    hour, day, week = (stats.snapshot(w) for w in ("hour", "day", "week"))
    assert [s.bucket_seconds for s in (hour, day, week)] == [60, 1440, 10080]
    assert all(len(s.times) == 60 and len(s.series["received"]) == 60 for s in (hour, day, week))
    assert hour.end == T0 + 60 and hour.start == T0 - 3540
    assert [hour.totals["received"], day.totals["received"], week.totals["received"]] == [3, 4, 5]
    # The newest minute is the last point, one 61 s back the one before it.
    assert hour.series["received"][-1] == 1 and hour.series["received"][-3] == 1
    assert sum(1 for v in hour.series["received"] if v) == 3
    assert len(hour.top_ips) == 3 and len(day.top_ips) == 4 and len(week.top_ips) == 5
    assert stats.totals()["RECEIVE"] == 6  # the 8-day-old line is counted for /metrics, not bucketed
    with pytest.raises(ValueError, match="unknown window"):
        stats.snapshot("month")

    clock.advance(8 * 86400)
    stats.refresh()
    assert stats.snapshot("week").totals["received"] == 0
    assert stats.buckets == (0, 0)  # minute and hour buckets all dropped


def test_breakdowns_are_capped(tmp_path: Path, clock: FakeClock) -> None:
    log = writer(tmp_path, clock)
    for n in range(CAP + 40):
        receive(log, n, ip=f"10.0.{n // 256}.{n % 256}", sender=f"x@d{n}.test")
    receive(log, 9999, ip="10.0.0.1", sender="y@d1.test")
    log.close()
    stats = stats_of(tmp_path, clock)
    stats.refresh()
    snap = stats.snapshot("hour")
    assert dict(snap.top_ips)["10.0.0.1"] == 2 and dict(snap.top_domains)["d1.test"] == 2
    assert (OTHER, 40) in snap.top_ips and (OTHER, 40) in snap.top_domains
