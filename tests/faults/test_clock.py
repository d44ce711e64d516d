"""The wall clock jumping forward and back (an NTP step, a VM restored from a snapshot).

Component tests: the spool, the queue manager and the certificate store take an injected
clock, so a jump is one assignment. What must hold: a forward jump past the expiry bounces a
message once, with one DSN; a backward jump never strands deferred mail for the length of the
jump; certificates are renewed once when a jump makes them due, and a jump back renews nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from edgeward.config.schema import Config, QueueConfig, SendConnectorConfig, ServerConfig
from edgeward.delivery.manager import QueueManager
from edgeward.delivery.results import Deferred, Delivered, RecipientResult
from edgeward.delivery.routing import Route, Router
from edgeward.queue import MessageRecord, QueueState, RecipientRecord, Spool
from edgeward.tls.store import CertificateStore
from edgeward.types import Reply

T0 = 1_800_000_000.0
DAY = 86400.0
BODY = b"From: a@src.test\r\nSubject: clock\r\nMessage-ID: <clock@src.test>\r\n\r\nx\r\n"


class JumpingClock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> float:
        return self.t


class Downstream:
    """Defers every recipient until ``up``; counts what it was asked to send."""

    def __init__(self) -> None:
        self.up = False
        self.attempts = 0
        self.dsns: list[MessageRecord] = []

    async def __call__(
        self, route: Route, record: MessageRecord, rcpts: Sequence[RecipientRecord], data: bytes
    ) -> dict[str, RecipientResult]:
        if record.mail_from == "":
            self.dsns.append(record)
            return {r.address: Delivered(Reply(250, "2.0.0", "ok")) for r in rcpts}
        self.attempts += 1
        if self.up:
            return {r.address: Delivered(Reply(250, "2.0.0", "ok")) for r in rcpts}
        return {r.address: Deferred(Reply(451, "4.4.1", "next hop down")) for r in rcpts}


class Events:
    def __init__(self) -> None:
        self.names: list[str] = []

    def event(self, event: str, **fields: object) -> None:
        self.names.append(event)


@pytest.fixture
def clock() -> JumpingClock:
    return JumpingClock()


@pytest.fixture
def spool(tmp_path: Path, clock: JumpingClock) -> Spool:
    return Spool(tmp_path / "spool", fsync=False, clock=clock)


def _manager(spool: Spool, clock: JumpingClock, down: Downstream, events: Events) -> QueueManager:
    connector = SendConnectorConfig(name="relay", address_spaces=("*",), smart_hosts=("127.0.0.1:1",))  # type: ignore[arg-type]
    cfg = Config(server=ServerConfig(hostname="gw.test"), send_connectors=(connector,),
                 queue=QueueConfig(fsync=False))  # fmt: skip
    return QueueManager(spool, Router.from_config(cfg), cfg, events, deliver=down, clock=clock)


async def _accept(spool: Spool, clock: JumpingClock) -> str:
    record = MessageRecord("", "a@src.test", (RecipientRecord("b@dst.test"),), clock.now(), len(BODY),
                           message_id="<clock@src.test>")  # fmt: skip
    return await spool.accept(record, BODY)


async def test_a_jump_past_the_expiry_bounces_once(spool: Spool, clock: JumpingClock) -> None:
    down, events = Downstream(), Events()
    manager = _manager(spool, clock, down, events)
    msg_id = await _accept(spool, clock)
    await manager.run_once()
    assert spool.load(msg_id).state is QueueState.DEFERRED
    clock.t += 3 * DAY  # past the two-day expiry in one step
    await manager.run_once()
    await manager.run_once()
    assert events.names.count("EXPIRE") == 1
    assert len(down.dsns) == 1 and spool.list() == []
    clock.t += 3 * DAY
    await manager.run_once()
    assert len(down.dsns) == 1, "one failure notice, however far the clock jumps"


async def test_a_jump_past_the_delay_notice_sends_it_once(spool: Spool, clock: JumpingClock) -> None:
    down, events = Downstream(), Events()
    manager = _manager(spool, clock, down, events)
    msg_id = await _accept(spool, clock)
    await manager.run_once()
    for _ in range(3):
        clock.t += 5 * 3600
        await manager.run_once()
    assert len(down.dsns) == 1
    assert spool.load(msg_id).delay_notified


async def test_a_jump_back_does_not_strand_deferred_mail(spool: Spool, clock: JumpingClock) -> None:
    down, events = Downstream(), Events()
    manager = _manager(spool, clock, down, events)
    msg_id = await _accept(spool, clock)
    await manager.run_once()
    waited_for = spool.load(msg_id).next_attempt_at
    clock.t -= DAY  # the clock steps back a day: the retry is now a day and a minute away
    down.up = True
    await manager.run_once()
    # No retry interval is longer than max_retry_interval, so a retry time further away than
    # that was set by a clock that has since gone back; it is due now, not a day later.
    assert waited_for - clock.now() > QueueConfig().max_retry_interval
    assert spool.list() == [] and down.attempts == 2


async def test_a_jump_back_neither_expires_nor_notifies(spool: Spool, clock: JumpingClock) -> None:
    down, events = Downstream(), Events()
    manager = _manager(spool, clock, down, events)
    msg_id = await _accept(spool, clock)
    await manager.run_once()
    clock.t -= 10 * DAY  # the message now looks received in the future
    await manager.run_once()
    record = spool.load(msg_id)
    assert record.state is QueueState.DEFERRED and not record.delay_notified
    assert "EXPIRE" not in events.names and down.dsns == []
    assert down.attempts == 2  # retried at once, not ten days on
    down.up = True
    clock.t += QueueConfig().glitch_retry_interval
    await manager.run_once()
    assert spool.list() == []


def test_certificates_are_renewed_once_when_a_jump_makes_them_due(tmp_path: Path) -> None:
    clock = JumpingClock()
    store = CertificateStore(tmp_path / "tls", clock=clock)
    store.ensure_default("mx.example.test", key_type="ec", days=365)
    clock.t += 2 * 365 * DAY  # far past expiry in one step
    first = store.renew_due(30)
    again = store.renew_due(30)
    assert len(first.renewed) == 1 and again.renewed == ()
    clock.t = T0 - 30 * DAY  # back before the new certificate's start
    assert store.renew_due(30).renewed == ()
    [bound] = [info for info in store.list() if info.bindings]
    assert bound.thumbprint == first.renewed[0][1]
