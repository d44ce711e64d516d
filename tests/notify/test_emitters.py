"""What the gateway's parts emit: the antivirus agent, the scan policy's transitions, the
signature updates and the quarantine growth watch, each with a recording sink."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edgeward.config.antivirus import AntivirusConfig
from edgeward.config.schema import Config, ReceiveConnectorConfig
from edgeward.filters.agents.antivirus import Antivirus
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.notify.events import Event
from edgeward.quarantine.growth import DAY, GrowthWatch
from edgeward.quarantine.store import QuarantineEntry, QuarantineStore
from edgeward.scanning.policy import Engine, MultiEnginePolicy
from edgeward.scanning.updates import run_updates
from edgeward.testing.scanner import FakeScanner
from edgeward.types import Action, Address, Peer

VIRUS = b"VIRUS-PATTERN"


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


def _ctx(data: bytes) -> StageContext:
    session = SessionInfo("s1", Peer("192.0.2.1", 1234), ReceiveConnectorConfig(name="internet"))
    return StageContext(
        Stage.EOD, session, data=data, mail_from=Address("evil\r\n", "remote.test"),
        recipients=(Address("u", "example.test"),), msg_id="Q1",
    )  # fmt: skip


def _agent(sink: Sink, *fakes: FakeScanner, **cfg: object) -> Antivirus:
    config = AntivirusConfig.model_validate({"enabled": True, **cfg})
    policy = MultiEnginePolicy([Engine(f, 5.0) for f in fakes], config.require, sink)
    return Antivirus(policy, config, sink)


def test_an_infection_is_a_virus_event_and_clean_mail_is_none() -> None:
    sink = Sink()
    av = _agent(sink, FakeScanner({VIRUS: "Evil\r\nBcc: x"}, name="clamd"))
    clean = asyncio.run(av.check(Stage.EOD, _ctx(b"Subject: hi\r\n\r\nnothing\r\n")))
    assert clean.action is Action.CONTINUE and sink.events == []
    outcome = asyncio.run(av.check(Stage.EOD, _ctx(b"Subject: hi\r\n\r\nbody " + VIRUS + b"\r\n")))
    assert outcome.action is Action.REJECT
    [event] = sink.events
    assert (event.kind, event.fields["action"], event.fields["engine"]) == ("virus", "reject", "clamd")
    assert event.fields["signature"] == "Evil Bcc: x" and event.fields["msg_id"] == "Q1"
    assert event.fields["recipients"] == "u@example.test" and event.fields["client_ip"] == "192.0.2.1"
    assert all("\r" not in v and "\n" not in v for v in event.fields.values())


def test_engine_outages_are_transitions_not_one_event_per_message() -> None:
    sink = Sink()
    clamd = FakeScanner({VIRUS: "Sig"}, name="clamd")
    av = _agent(sink, clamd)
    data = b"Subject: hi\r\n\r\nclean\r\n"
    clamd.down = True
    for _ in range(5):
        assert asyncio.run(av.check(Stage.EOD, _ctx(data))).action is Action.TEMPFAIL
    clamd.down = False
    for _ in range(3):
        assert asyncio.run(av.check(Stage.EOD, _ctx(data))).action is Action.CONTINUE
    seen = [(e.kind, e.fields["engine"]) for e in sink.events]
    assert seen == [("engine_down", "clamd"), ("engine_up", "clamd")]


def test_an_item_too_large_is_no_outage() -> None:
    sink = Sink()
    fake = FakeScanner({VIRUS: "Sig"}, name="clamd")
    fake.max_stream = 4
    asyncio.run(_agent(sink, fake).check(Stage.EOD, _ctx(b"Subject: hi\r\n\r\nlong enough\r\n")))
    assert sink.events == []


async def test_failed_and_stale_signature_rounds_are_events(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "clamd.conf").write_text(f"DatabaseDirectory {tmp_path / 'db'}\n")
    config = Config.model_validate({
        "server": {"data_dir": str(tmp_path)},
        "antivirus": {"enabled": True, "clamd": {"enabled": False}, "updates": {
            "freshclam": str(tmp_path / "no-freshclam"), "clamd_conf": str(tmp_path / "clamd.conf"),
            "mirror": "http://127.0.0.1:9/", "interval": 3600,
        }},
    })  # fmt: skip
    sink = Sink()
    task = asyncio.get_running_loop().create_task(run_updates(lambda: config, list, notifier=sink))
    try:
        for _ in range(400):
            if len(sink.events) >= 2:
                break
            await asyncio.sleep(0.025)
    finally:
        task.cancel()
    assert [e.kind for e in sink.events] == ["signature_update_failed", "signatures_stale"]
    assert sink.events[1].fields["age"] == "unknown" and sink.events[1].fields["limit"] == "72.0h"


def test_quarantine_growth_alarms_on_crossing_then_daily(tmp_path: Path) -> None:
    store = QuarantineStore(tmp_path / "q", fsync=False)
    now = [2_000_000_000.0]
    sink = Sink()
    watch = GrowthWatch(store, sink, now=lambda: now[0])
    for _ in range(3):
        store.put(QuarantineEntry("x", "a@b.test", ("u@example.test",), "content-filter",
                                  quarantined_at=now[0] - 60), b"Subject: s\r\n\r\nx\r\n")  # fmt: skip
    store.put(QuarantineEntry("x", "a@b.test", ("u@example.test",), "content-filter",
                              quarantined_at=now[0] - 2 * DAY), b"Subject: s\r\n\r\nx\r\n")  # fmt: skip
    assert watch.check(3) == 3 and sink.events == []  # three in a day is not more than three
    assert watch.check(2) == 3
    assert watch.check(2) == 3  # still above: no second alarm the same day
    [event] = sink.events
    assert (event.kind, event.fields["entries"], event.fields["threshold"]) == ("quarantine_growth", "3", "2")
    now[0] += DAY / 2
    watch.check(2)
    assert len(sink.events) == 1
    assert watch.check(0) == 3  # 0 is off: counted, never an alarm
    assert len(sink.events) == 1
