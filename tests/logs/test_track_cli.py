"""``edgeward track``: searching the tracking log from the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgeward.cli.track import parse_when, track_app
from edgeward.config.schema import LoggingConfig
from edgeward.logs.tracking import TrackingLog

runner = CliRunner()


class FixedClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    folder = tmp_path / "log"
    now = datetime.now(UTC)
    clock = FixedClock((now - timedelta(days=3)).timestamp())
    log = TrackingLog(folder, LoggingConfig(), clock=clock)
    log.event("RECEIVE", msg_id="OLD", sender="old@example.org", recipients=["x@example.net"])
    clock.t = (now - timedelta(hours=1)).timestamp()
    log.event(
        "RECEIVE",
        msg_id="NEW",
        sender="Alice@example.org",
        recipients=["Bob@example.net"],
        message_id="<n@example.org>",
        reply="250 2.0.0 queued as NEW",
    )
    clock.t = (now - timedelta(minutes=30)).timestamp()
    log.event(
        "SEND",
        msg_id="NEW",
        sender="alice@example.org",
        recipients=["bob@example.net"],
        reply="250 ok",
        next_hop="mx.example.net",
    )
    log.close()
    return folder


def ids(output: str) -> list[tuple[str, str]]:
    return [(e["msg_id"], e["event"]) for e in map(json.loads, output.splitlines())]


def test_search_by_recipient_as_json_lines(logdir: Path) -> None:
    r = runner.invoke(track_app, ["--recipient", "BOB@example.net", "--json", "--log-dir", str(logdir)])
    assert r.exit_code == 0, r.output
    assert ids(r.stdout) == [("NEW", "RECEIVE"), ("NEW", "SEND")]


def test_relative_and_iso_since(logdir: Path) -> None:
    r = runner.invoke(track_app, ["--since", "2h", "--json", "--log-dir", str(logdir)])
    assert ids(r.stdout) == [("NEW", "RECEIVE"), ("NEW", "SEND")]
    r = runner.invoke(track_app, ["--since", "45m", "--json", "--log-dir", str(logdir)])
    assert ids(r.stdout) == [("NEW", "SEND")]
    old_day = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    r = runner.invoke(track_app, ["--since", old_day, "--until", "2d", "--json", "--log-dir", str(logdir)])
    assert ids(r.stdout) == [("OLD", "RECEIVE")]


def test_event_message_id_and_id_filters(logdir: Path) -> None:
    r = runner.invoke(track_app, ["--event", "send", "--json", "--log-dir", str(logdir)])
    assert ids(r.stdout) == [("NEW", "SEND")]
    r = runner.invoke(track_app, ["--message-id", "n@example.org", "--json", "--log-dir", str(logdir)])
    assert ids(r.stdout) == [("NEW", "RECEIVE")]
    r = runner.invoke(
        track_app, ["--id", "OLD", "--sender", "OLD@example.org", "--json", "--log-dir", str(logdir)]
    )
    assert ids(r.stdout) == [("OLD", "RECEIVE")]


def test_table_output(logdir: Path) -> None:
    r = runner.invoke(track_app, ["--id", "NEW", "--log-dir", str(logdir)], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    assert "SEND" in r.stdout and "mx.example.net" in r.stdout and "250 ok" in r.stdout
    r = runner.invoke(track_app, ["--id", "NONE", "--log-dir", str(logdir)])
    assert r.exit_code == 0 and "no matching entries" in r.stderr


def test_log_dir_from_the_configuration(logdir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "edgeward.toml"
    cfg.write_text('[logging]\ndir = "log"\n')
    r = runner.invoke(track_app, ["--config", str(cfg), "--event", "RECEIVE", "--json"])
    assert r.exit_code == 0, r.output
    assert ids(r.stdout) == [("OLD", "RECEIVE"), ("NEW", "RECEIVE")]


def test_bad_input_exits_2(logdir: Path, tmp_path: Path) -> None:
    for args in (["--since", "yesterday"], ["--event", "TELEPORT"]):
        r = runner.invoke(track_app, [*args, "--log-dir", str(logdir)])
        assert r.exit_code == 2
    r = runner.invoke(track_app, ["--config", str(tmp_path / "missing.toml")])
    assert r.exit_code == 2 and "missing.toml" in r.stderr
    r = runner.invoke(track_app, ["--log-dir", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "no log folder" in r.stderr


def test_parse_when() -> None:
    clock = FixedClock(datetime(2024, 5, 3, tzinfo=UTC).timestamp())
    assert parse_when("2d", clock) == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_when("1w", clock) == datetime(2024, 4, 26, tzinfo=UTC)
    assert parse_when("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_when("2024-05-01T02:00:00+02:00") == datetime(2024, 5, 1, tzinfo=UTC)
    with pytest.raises(typer.BadParameter):
        parse_when("soon")
