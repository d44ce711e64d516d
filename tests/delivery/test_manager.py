"""The queue manager over a real spool: delivery, retry, DSNs, expiry, poison, concurrency.

Time is a fixed clock moved by hand; retries happen when a test moves it past
``next_attempt_at`` and calls ``run_once``. Delivery is a real SMTP server or drop folder where
the integration is the point, and a scripted ``Deliver`` function where the logic is.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from edgeward.config.schema import Config, QueueConfig, SendConnectorConfig, ServerConfig
from edgeward.delivery.dispatch import Dispatcher
from edgeward.delivery.manager import QueueManager
from edgeward.delivery.results import Deferred, Delivered, Failed, RecipientResult
from edgeward.delivery.routing import Route, Router
from edgeward.errors import InsufficientStorage
from edgeward.queue import MessageRecord, QueueState, RecipientRecord, RecipientStatus, Spool
from edgeward.types import Reply
from tests.delivery.conftest import free_port
from tests.smtpdownstream import ClosingController as Controller

BODY = b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: hi\r\nMessage-ID: <m1@src.test>\r\n\r\nhello\r\n"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> float:
        return self.t


class Events:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def event(self, event: str, **fields: Any) -> None:
        self.items.append({"event": event, **fields})

    def names(self) -> list[str]:
        return [e["event"] for e in self.items]


class Scripted:
    """A Deliver function answering from a table address -> result (default Delivered)."""

    def __init__(self, answers: dict[str, RecipientResult] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[str, list[str]]] = []
        self.sent_dsns: list[tuple[MessageRecord, bytes]] = []

    async def __call__(
        self, route: Route, record: MessageRecord, rcpts: Sequence[RecipientRecord], data: bytes
    ) -> dict[str, RecipientResult]:
        self.calls.append((route.next_hop, [r.address for r in rcpts]))
        if record.mail_from == "":
            self.sent_dsns.append((record, data))
        ok = Delivered(Reply(250, "2.0.0", "ok"))
        return {r.address: self.answers.get(r.address, ok) for r in rcpts}


def config(*connectors: SendConnectorConfig, **queue: Any) -> Config:
    if not connectors:
        connectors = (SendConnectorConfig(name="relay", address_spaces=("*",), smart_hosts=("127.0.0.1:1",)),)  # type: ignore[arg-type]
    return Config(
        server=ServerConfig(hostname="gw.test"),
        send_connectors=connectors,
        queue=QueueConfig(fsync=False, **queue),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def spool(tmp_path: Path, clock: Clock) -> Spool:
    return Spool(tmp_path / "spool", fsync=False, clock=clock, poison_threshold=2)


def make(
    spool: Spool, clock: Clock, cfg: Config, deliver: Callable[..., Any], events: Events | None = None
) -> QueueManager:
    return QueueManager(spool, Router.from_config(cfg), cfg, events or Events(), deliver=deliver, clock=clock)


async def accept(
    spool: Spool, *rcpts: str | RecipientRecord, sender: str = "a@src.test", ret: str | None = None
) -> str:
    recipients = tuple(r if isinstance(r, RecipientRecord) else RecipientRecord(r) for r in rcpts)
    rec = MessageRecord(
        "", sender, recipients, spool_now(spool), len(BODY), message_id="<m1@src.test>", ret=ret
    )
    return await spool.accept(rec, BODY)


def spool_now(spool: Spool) -> float:
    return spool._clock.now()


# -- real transports ---------------------------------------------------------------------------


async def test_drop_folder_delivery(spool: Spool, clock: Clock, tmp_path: Path) -> None:
    drop = SendConnectorConfig(name="drop", address_spaces=("*",), drop_dir=tmp_path / "out")  # type: ignore[arg-type]
    cfg = config(drop)
    events = Events()
    manager = make(spool, clock, cfg, Dispatcher(cfg, None), events)
    msg_id = await accept(spool, "b@dst.test")
    assert await manager.run_once() == 1
    assert (tmp_path / "out" / f"{msg_id}.eml").read_bytes() == BODY
    assert spool.list() == []
    assert events.names() == ["DELIVER"]


class Sink:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.original_content)
        return "250 2.0.0 queued"


async def test_downstream_down_then_back(spool: Spool, clock: Clock) -> None:
    port = free_port()
    conn = SendConnectorConfig(
        name="relay", address_spaces=("*",), smart_hosts=(f"127.0.0.1:{port}",), connect_timeout=5
    )  # type: ignore[arg-type]
    cfg = config(conn)
    events = Events()
    manager = make(spool, clock, cfg, Dispatcher(cfg, None), events)
    msg_id = await accept(spool, "b@dst.test")

    await manager.run_once()
    [rec] = spool.list()
    assert rec.state is QueueState.DEFERRED and rec.attempts == 1
    assert rec.recipients[0].status is RecipientStatus.DEFERRED
    assert rec.recipients[0].last_reply.startswith("451 4.4.1")
    assert rec.next_attempt_at == T0 + cfg.queue.glitch_retry_interval
    assert events.names() == ["DEFER"]

    assert await manager.run_once() == 0  # not due yet

    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        clock.t = rec.next_attempt_at
        assert await manager.run_once() == 1
    finally:
        controller.stop()
    assert sink.received == [BODY]
    assert spool.list() == []
    assert events.names() == ["DEFER", "SEND"]
    assert events.items[-1]["msg_id"] == msg_id and events.items[-1]["next_hop"] == f"relay[127.0.0.1:{port}]"


# -- logic with a scripted transport -----------------------------------------------------------


async def test_permanent_failure_queues_dsn_to_sender(spool: Spool, clock: Clock) -> None:
    events = Events()
    deliver = Scripted({"b@dst.test": Failed(Reply(550, "5.1.1", "No such user"))})
    manager = make(spool, clock, config(), deliver, events)
    msg_id = await accept(spool, "b@dst.test")
    await manager.run_once()  # the DSN is queued and, being due at once, delivered in the same round
    assert spool.list() == []
    [(dsn, data)] = deliver.sent_dsns
    assert [r.address for r in dsn.recipients] == ["a@src.test"] and dsn.connector == "dsn"
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    assert parsed.get_content_type() == "multipart/report"
    status = parsed.get_payload()[1].get_payload()[1]  # type: ignore[index]
    assert status["Action"] == "failed" and status["Status"] == "5.1.1"
    assert status["Final-Recipient"] == "rfc822; b@dst.test"
    assert events.names() == ["FAIL", "DSN", "SEND"]
    assert events.items[1]["msg_id"] == msg_id and events.items[2]["msg_id"] == dsn.id


async def test_the_dsn_itself_is_delivered_and_never_bounced(spool: Spool, clock: Clock) -> None:
    deliver = Scripted(
        {"b@dst.test": Failed(Reply(550, "5.1.1", "No")), "a@src.test": Failed(Reply(550, "5.1.1", "No"))}
    )
    manager = make(spool, clock, config(), deliver, Events())
    await accept(spool, "b@dst.test")
    await manager.run_once()  # the DSN is queued, then attempted and fails too
    assert deliver.calls[-1][1] == ["a@src.test"]
    assert spool.list() == []  # a failed DSN is dropped, no DSN about a DSN


async def test_null_sender_gets_no_dsn(spool: Spool, clock: Clock) -> None:
    events = Events()
    manager = make(
        spool, clock, config(), Scripted({"b@dst.test": Failed(Reply(550, "5.1.1", "No"))}), events
    )
    await accept(spool, "b@dst.test", sender="")
    await manager.run_once()
    assert spool.list() == [] and "DSN" not in events.names()


async def test_notify_never_gets_no_dsn(spool: Spool, clock: Clock) -> None:
    manager = make(spool, clock, config(), Scripted({"b@dst.test": Failed(Reply(550, "5.1.1", "No"))}))
    await accept(spool, RecipientRecord("b@dst.test", notify=("NEVER",)))
    await manager.run_once()
    assert spool.list() == []


async def test_partial_failure(spool: Spool, clock: Clock) -> None:
    deliver = Scripted(
        {
            "bad@dst.test": Failed(Reply(550, "5.1.1", "No such user")),
            "later@dst.test": Deferred(Reply(451, "4.3.0", "Busy")),
        }
    )
    manager = make(spool, clock, config(), deliver, Events())
    msg_id = await accept(spool, "ok@dst.test", "bad@dst.test", "later@dst.test")
    await manager.run_once()
    rec = spool.load(msg_id)
    assert [r.status for r in rec.recipients] == [
        RecipientStatus.DELIVERED,
        RecipientStatus.FAILED,
        RecipientStatus.DEFERRED,
    ]
    [(_, data)] = deliver.sent_dsns
    assert b"bad@dst.test" in data and b"ok@dst.test" not in data and b"later@dst.test" not in data

    clock.t = rec.next_attempt_at
    deliver.answers.clear()
    await manager.run_once()
    assert (deliver.calls[-1][1]) == ["later@dst.test"]  # only the open recipient is tried again
    assert msg_id not in {r.id for r in spool.list()}


async def test_delay_notice_once(spool: Spool, clock: Clock) -> None:
    events = Events()
    deliver = Scripted({"b@dst.test": Deferred(Reply(451, "4.4.1", "Connection refused"))})
    manager = make(spool, clock, config(), deliver, events)
    msg_id = await accept(spool, "b@dst.test")
    await manager.run_once()
    assert deliver.sent_dsns == []
    clock.t = T0 + 4 * 3600 + 1
    await manager.run_once()
    [(_, data)] = deliver.sent_dsns
    assert b"Action: delayed" in data and b"Will-Retry-Until:" in data
    assert spool.load(msg_id).delay_notified
    clock.t += 3600
    await manager.run_once()
    assert len(deliver.sent_dsns) == 1 and events.names().count("DSN") == 1


async def test_expiry_fails_with_4_4_7_and_dsn(spool: Spool, clock: Clock) -> None:
    events = Events()
    deliver = Scripted({"b@dst.test": Deferred(Reply(451, "4.4.1", "Connection refused"))})
    manager = make(spool, clock, config(), deliver, events)
    await accept(spool, "b@dst.test")
    clock.t = T0 + 2 * 86400
    await manager.run_once()
    assert spool.list() == []
    [(_, data)] = deliver.sent_dsns
    assert b"Action: failed" in data and b"Status: 4.4.7" in data
    assert "EXPIRE" in events.names() and "DSN" in events.names()


async def test_requiretls_expiry_bounces_with_5_7_10_and_returns_headers_only(
    spool: Spool, clock: Clock
) -> None:
    events = Events()
    deliver = Scripted({"b@dst.test": Deferred(Reply(451, "4.7.4", "TLS is required (requiretls)"))})
    manager = make(spool, clock, config(), deliver, events)
    rec = MessageRecord("", "a@src.test", (RecipientRecord("b@dst.test"),), T0, len(BODY), require_tls=True)
    await spool.accept(rec, BODY)
    clock.t = T0 + 2 * 86400
    await manager.run_once()
    [(dsn, data)] = deliver.sent_dsns
    assert b"Status: 5.7.10" in data and b"REQUIRETLS" in data
    # RFC 8689 §4.4: the notice carries the headers but not the body, and itself needs TLS.
    assert b"Subject: hi" in data and b"\r\nhello\r\n" not in data
    assert dsn.require_tls


async def test_delivery_detail_goes_into_the_send_event(spool: Spool, clock: Clock) -> None:
    events = Events()
    how = "TLSv1.3 TLS_AES_256_GCM_SHA384, peer CN=mx.dst.test, CA-valid, name matched"
    deliver = Scripted({"b@dst.test": Delivered(Reply(250, "2.0.0", "ok"), how)})
    manager = make(spool, clock, config(), deliver, events)
    await accept(spool, "b@dst.test")
    await manager.run_once()
    [send] = [e for e in events.items if e["event"] == "SEND"]
    assert send["detail"] == how


async def test_no_route_stays_unreachable(spool: Spool, clock: Clock) -> None:
    only = SendConnectorConfig(name="inside", address_spaces=("corp.test",), smart_hosts=("127.0.0.1:1",))  # type: ignore[arg-type]
    events = Events()
    deliver = Scripted()
    manager = make(spool, clock, config(only), deliver, events)
    msg_id = await accept(spool, "x@elsewhere.test")
    await manager.run_once()
    rec = spool.load(msg_id)
    assert rec.state is QueueState.DEFERRED
    assert rec.recipients[0].last_reply == "451 4.4.0 No route to elsewhere.test"
    assert deliver.calls == [] and events.items[0]["detail"] == "unreachable"


async def test_groups_recipients_by_next_hop(spool: Spool, clock: Clock) -> None:
    internet = SendConnectorConfig(name="internet", address_spaces=("*",), dns_routing=True)  # type: ignore[arg-type]
    deliver = Scripted()
    manager = make(spool, clock, config(internet), deliver)
    await accept(spool, "a@one.test", "b@two.test", "c@one.test")
    await manager.run_once()
    assert sorted(deliver.calls) == [("one.test", ["a@one.test", "c@one.test"]), ("two.test", ["b@two.test"])]


async def test_crash_then_poison(spool: Spool, clock: Clock) -> None:
    events = Events()

    async def explode(
        route: Route, record: MessageRecord, rcpts: Sequence[RecipientRecord], data: bytes
    ) -> dict[str, RecipientResult]:
        if rcpts[0].address == "boom@dst.test":
            raise RuntimeError("parser bug")
        return {r.address: Delivered(Reply(250, "2.0.0", "ok")) for r in rcpts}

    manager = make(spool, clock, config(), explode, events)
    bad = await accept(spool, "boom@dst.test")
    good = await accept(spool, "fine@dst.test")
    await manager.run_once()
    rec = spool.load(bad)
    assert rec.state is QueueState.DEFERRED and rec.crash_count == 1
    assert good not in {r.id for r in spool.list()}  # the other message went out regardless
    clock.t = rec.next_attempt_at
    await manager.run_once()
    rec = spool.load(bad)
    assert rec.state is QueueState.HOLD and rec.hold_reason == "poison" and rec.crash_count == 2
    assert events.names().count("POISON") == 1


async def test_next_hop_concurrency_bound(spool: Spool, clock: Clock) -> None:
    conn = SendConnectorConfig(
        name="relay", address_spaces=("*",), smart_hosts=("127.0.0.1:1",), max_connections=2
    )  # type: ignore[arg-type]
    in_flight = 0
    peak = 0

    async def slow(
        route: Route, record: MessageRecord, rcpts: Sequence[RecipientRecord], data: bytes
    ) -> dict[str, RecipientResult]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(5):
            await asyncio.sleep(0)  # let every other delivery task run up to the semaphore
        in_flight -= 1
        return {r.address: Delivered(Reply(250, "2.0.0", "ok")) for r in rcpts}

    manager = make(spool, clock, config(conn), slow)
    for _ in range(6):
        await accept(spool, "b@dst.test")
    assert await manager.run_once() == 6
    assert peak == 2
    assert spool.list() == []


async def test_max_active_bounds_messages(spool: Spool, clock: Clock) -> None:
    deliver = Scripted()
    manager = make(spool, clock, config(max_active=2), deliver)
    for _ in range(5):
        await accept(spool, "b@dst.test")
    assert manager.dispatch_due() == 2
    assert len(manager.active) == 2
    await manager.run_once()
    assert spool.list() == [] and len(deliver.calls) == 5


async def test_run_wakes_on_notify_and_stops(spool: Spool, clock: Clock) -> None:
    delivered = asyncio.Event()

    async def deliver(
        route: Route, record: MessageRecord, rcpts: Sequence[RecipientRecord], data: bytes
    ) -> dict[str, RecipientResult]:
        delivered.set()
        return {r.address: Delivered(Reply(250, "2.0.0", "ok")) for r in rcpts}

    manager = make(spool, clock, config(scan_interval=3600), deliver)
    runner = asyncio.create_task(manager.run())
    await asyncio.sleep(0)
    msg_id = await accept(spool, "b@dst.test")
    manager.notify(msg_id)
    await asyncio.wait_for(delivered.wait(), timeout=30)
    await manager.stop(grace=30)
    await asyncio.wait_for(runner, timeout=30)
    assert runner.done() and runner.exception() is None


async def _until(check: Callable[[], object]) -> None:
    for _ in range(3000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in 30 s")


async def test_an_arrived_message_starts_without_a_scan_and_a_full_manager_leaves_it_to_one(
    spool: Spool, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = asyncio.Event()
    started: list[str] = []

    async def deliver(
        route: Route, record: MessageRecord, rcpts: Sequence[RecipientRecord], data: bytes
    ) -> dict[str, RecipientResult]:
        started.append(record.id)
        await release.wait()
        return {r.address: Delivered(Reply(250, "2.0.0", "ok")) for r in rcpts}

    manager = make(spool, clock, config(scan_interval=3600, max_active=2), deliver)
    early = await accept(spool, "b@dst.test")
    manager.arrived(early)  # not running yet: nothing starts, the first scan will find it
    assert manager.active == frozenset()
    runner = asyncio.create_task(manager.run())
    await _until(lambda: started)
    scans: list[float] = []
    real_due = spool.due
    monkeypatch.setattr(spool, "due", lambda *a, **k: scans.append(1) or real_due(*a, **k))
    second, third = await accept(spool, "b@dst.test"), await accept(spool, "b@dst.test")
    manager.arrived(second)
    manager.arrived(second)  # the same id twice starts it once
    await _until(lambda: len(started) == 2)
    assert scans == [] and manager.active == {early, second}
    manager.arrived(third)  # both slots taken: it waits for the scan a freed slot makes
    assert manager.active == {early, second}
    release.set()
    await _until(lambda: not spool.list())
    assert sorted(started) == sorted([early, second, third]) and scans
    await manager.stop(grace=30)
    await asyncio.wait_for(runner, timeout=30)


async def test_stop_puts_unfinished_delivery_back(spool: Spool, clock: Clock) -> None:
    started = asyncio.Event()

    async def hang(
        route: Route, record: MessageRecord, rcpts: Sequence[RecipientRecord], data: bytes
    ) -> dict[str, RecipientResult]:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    manager = make(spool, clock, config(), hang)
    msg_id = await accept(spool, "b@dst.test")
    manager.dispatch_due()
    await started.wait()
    await manager.stop(grace=0)
    rec = spool.load(msg_id)
    assert rec.state is QueueState.DEFERRED and rec.crash_count == 0 and rec.next_attempt_at == T0


async def test_a_notice_the_full_spool_refuses_is_owed_not_a_crash(
    spool: Spool, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure DSN that cannot be queued (disk full) keeps the recipient open and the message
    out of poison; once the spool takes mail again the next attempt queues the notice."""
    deliver = Scripted({"b@dst.test": Failed(Reply(550, "5.1.1", "No such user"))})
    manager = make(spool, clock, config(poison_threshold=1), deliver)
    msg_id = await accept(spool, "b@dst.test")
    real_accept = spool.accept

    async def full(record: MessageRecord, data: bytes) -> str:
        raise InsufficientStorage("no space left on device")

    monkeypatch.setattr(spool, "accept", full)
    await manager.run_once()
    [held] = spool.list()
    assert held.id == msg_id and held.state is QueueState.DEFERRED and held.crash_count == 0
    assert [r.status for r in held.recipients] == [RecipientStatus.DEFERRED]
    assert deliver.sent_dsns == []

    monkeypatch.setattr(spool, "accept", real_accept)
    clock.t = held.next_attempt_at + 1
    await manager.run_once()
    assert spool.list() == []
    [(dsn, _)] = deliver.sent_dsns
    assert [r.address for r in dsn.recipients] == ["a@src.test"]
