"""The queue manager: the runner that takes due messages from the spool and delivers them.

This module owns the delivery loop. It wakes when the session reports a newly accepted
message (:meth:`QueueManager.notify`, so fresh mail leaves at once) and every
``queue.scan_interval``; it claims due messages (at most ``queue.max_active`` at a time), splits
each message's open recipients by next hop (reference §4.3: one delivery queue per next hop,
each limited to its connector's ``max_connections`` concurrent deliveries), delivers, and
records every recipient's result:

* delivered: tracking SEND (SMTP) or DELIVER (drop folder);
* deferred: tracking DEFER; the message waits for ``schedule.next_attempt``; a recipient
  without a route waits as "unreachable" with ``451 4.4.0 No route to <domain>``;
* failed: tracking FAIL and a failure DSN to the sender (RFC 3464).

Once, after ``queue.delay_notification``, the sender gets a delay DSN; after
``queue.expiration`` every open recipient fails with ``4.4.7`` (tracking EXPIRE) and a DSN.
A DSN is queued through ``Spool.accept`` with the null sender, so it is as durable as any
message and is never bounced itself. DSNs are queued before the record is updated: a crash in
between may send a DSN twice, never lose one.

Unusable entries: a message whose data file is missing or cannot be read is moved to
``corrupt/`` (``Spool.set_aside``, which the spool also does for unreadable metadata it meets
while scanning), so one bad file is reported once and never blocks the others.

The loop itself survives every exception (logged with its traceback, then the next scan
follows as usual); the runtime's ``TaskSupervisor`` restarts the task should it die anyway.

Crashes (Mailman's poison parking, Exchange's PoisonThreshold): an exception while delivering
one message is logged and never stops the loop. The message's ``crash_count`` goes up by one
and it is deferred, or parked in HOLD with reason ``poison`` at ``queue.poison_threshold``,
exactly as ``Spool.recover`` does for a message left ACTIVE by a process that died; a failure
to record even that leaves it ACTIVE for ``recover``. A spool that refuses to store an
attempt's outcome (full, read-only) is no crash: the outcome is written again every
``queue.scan_interval`` until it is stored. :meth:`stop` lets running deliveries end
within a grace period and puts any still running back as due, without counting a crash.

Security: DSN text built from envelopes and remote replies is sanitised in ``delivery.dsn``;
the null sender never receives a DSN, so two gateways cannot bounce notices at each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from edgeward.config.schema import Config
from edgeward.delivery.dispatch import Deliver
from edgeward.delivery.dsn import DsnKind, build_dsn, expiry_reply, wants_dsn
from edgeward.delivery.results import Deferred, Delivered, Failed, RecipientResult, reply_line
from edgeward.delivery.routing import Route, Router
from edgeward.delivery.tracker import DeliveryTracker, Tracking
from edgeward.errors import QueueError
from edgeward.metrics import DELIVERY_SECONDS, count_delivery, next_hop_label
from edgeward.ports import Clock, SystemClock
from edgeward.queue.model import MessageRecord, QueueState, RecipientRecord, RecipientStatus, valid_id
from edgeward.queue.schedule import is_expired, needs_delay_notice, next_attempt
from edgeward.queue.spool import Spool
from edgeward.types import Reply

__all__ = ["QueueManager", "Tracking"]

log = logging.getLogger(__name__)

_RESULT_NAMES: dict[type[RecipientResult], str] = {
    Delivered: "delivered", Deferred: "deferred", Failed: "failed",
}  # fmt: skip


class _HopLimits:
    """One semaphore per next hop, dropped when no delivery uses it (hops are many domains)."""

    def __init__(self) -> None:
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}

    async def run(
        self,
        route: Route,
        work: Deliver,
        record: MessageRecord,
        rcpts: Sequence[RecipientRecord],
        data: bytes,
    ) -> dict[str, RecipientResult]:
        hop = route.next_hop
        sem, users = self._slots.get(hop) or (asyncio.Semaphore(route.connector.max_connections), 0)
        self._slots[hop] = (sem, users + 1)
        try:
            async with sem:
                return await work(route, record, rcpts, data)
        finally:
            sem, users = self._slots[hop]
            if users <= 1:
                del self._slots[hop]
            else:
                self._slots[hop] = (sem, users - 1)


class QueueManager:
    """Delivers what the spool holds. See the module docstring."""

    def __init__(
        self,
        spool: Spool,
        router: Router,
        config: Config,
        tracking: Tracking,
        *,
        deliver: Deliver,
        clock: Clock | None = None,
    ) -> None:
        self._spool = spool
        self._router = router
        self._config = config
        self._cfg = config.queue
        self._tracker = DeliveryTracker(tracking)
        self._deliver = deliver
        self._clock = clock if clock is not None else SystemClock()
        self._hops = _HopLimits()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._running = False  # run() is delivering: a new message may start at once
        self._saturated = False
        # Attempt outcomes the spool refused to store; left in ACTIVE for recover() on stop.
        self._pending_writes: set[asyncio.TimerHandle] = set()

    def reconfigure(self, router: Router, config: Config, deliver: Deliver) -> None:
        """New routes, retry settings and transports for attempts that start from now on.

        Deliveries already running finish with what they started with (SIGHUP reload).
        """
        self._router, self._config, self._cfg, self._deliver = router, config, config.queue, deliver
        self.notify()

    # -- the loop ------------------------------------------------------------------------------

    def notify(self, msg_id: str = "") -> None:
        """Something changed in the queue (a retry time, the routes): look at it now."""
        self._wake.set()

    def arrived(self, msg_id: str) -> None:
        """A new message ``msg_id`` is in ``incoming/``: start its delivery now if there is room.

        Without a slot, or for an id already in delivery, the next scan finds it. A new message
        asked for no scan of the folders: one scan per message cost more than its delivery's own
        Python work (a stat of every file in ``incoming/`` and ``deferred/`` each time), and
        retries are still found by the scan every ``scan_interval``.
        """
        if not self._running or self._stopping or msg_id in self._tasks or not valid_id(msg_id):
            self._wake.set()
            return
        if len(self._tasks) >= self._cfg.max_active:
            self._saturated = True  # a slot that frees up scans for it
            return
        self._start(msg_id)

    def _start(self, msg_id: str) -> None:
        task = asyncio.create_task(self._process(msg_id), name=f"deliver-{msg_id}")
        self._tasks[msg_id] = task
        task.add_done_callback(functools.partial(self._done, msg_id))

    @property
    def active(self) -> frozenset[str]:
        return frozenset(self._tasks)

    async def run(self) -> None:
        """Deliver until :meth:`stop`."""
        self._running = True
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    self.dispatch_due()
                except Exception:
                    # A scan that fails (a spool folder gone, a full file table) must not end
                    # delivery: say so loudly and look again at the next interval.
                    log.exception("queue scan failed; trying again in %.1fs", self._cfg.scan_interval)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._cfg.scan_interval)
        finally:
            self._running = False

    def dispatch_due(self, skip: set[str] | None = None) -> int:
        """Start deliveries for due messages, as many as ``max_active`` allows; returns how many.

        Ids in ``skip`` are left alone, and the ids started are added to it.
        """
        room = self._cfg.max_active - len(self._tasks)
        if room <= 0 or self._stopping:
            self._saturated = room <= 0
            return 0
        busy = set(self._tasks) | (skip or set())
        found = self._spool.due(self._clock.now(), room + len(busy), horizon=self._cfg.max_retry_interval)
        due = [r for r in found if r.id not in busy]
        for record in due[:room]:
            self._start(record.id)
            if skip is not None:
                skip.add(record.id)
        self._saturated = len(due) > room
        return min(len(due), room)

    def _done(self, msg_id: str, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(msg_id, None)
        if self._saturated:
            self._wake.set()  # more were waiting for a slot

    async def run_once(self) -> int:
        """Attempt every message due now, and those that become due meanwhile (such as DSNs),
        each at most once; wait for the attempts (tests, ``queue flush``). Returns how many."""
        tried: set[str] = set()
        count = 0
        while True:
            started = self.dispatch_due(tried)
            count += started
            if not self._tasks and not started:
                return count
            if self._tasks:
                await asyncio.wait(list(self._tasks.values()))

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking messages; give running deliveries ``grace`` seconds, then cancel them."""
        self._stopping = True
        self._wake.set()
        for handle in self._pending_writes:
            handle.cancel()
        self._pending_writes.clear()
        grace = self._config.server.shutdown_grace if grace is None else grace
        running = list(self._tasks.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    # -- one message ---------------------------------------------------------------------------

    async def _process(self, msg_id: str) -> None:
        try:
            await self._process_one(msg_id)
        except Exception:
            # Even recording a failure failed (the spool's folders unwritable): the message is
            # left where it is, for the next scan or recover(); the loop carries on.
            log.exception("handling %s failed; it is left in the spool as it is", msg_id)

    async def _process_one(self, msg_id: str) -> None:
        try:
            record = self._spool.claim(msg_id)
        except KeyError:
            return  # gone, held or corrupt since it was listed
        except Exception:
            log.exception("cannot claim %s; it stays where it is for the next scan", msg_id)
            return
        try:
            data = await asyncio.to_thread(self._spool.read_data, record.id)
        except KeyError:
            self._spool.set_aside(record.id, QueueState.ACTIVE, "the data file is missing")
            return
        except (PermissionError, IsADirectoryError) as exc:
            reason = f"the data file cannot be read: {exc.strerror}"
            self._spool.set_aside(record.id, QueueState.ACTIVE, reason)
            return
        except Exception as exc:
            log.exception("cannot read the data of %s", msg_id)
            self._crashed(record, exc)
            return
        try:
            await self._attempt(record, data)
        except asyncio.CancelledError:
            # Shutdown: the attempt did not finish; make it due again, this was no crash.
            self._put_back(record)
            raise
        except Exception as exc:
            log.exception("delivery of %s crashed", msg_id)
            self._crashed(record, exc)

    def _put_back(self, record: MessageRecord) -> None:
        try:
            self._spool.update(replace(record, next_attempt_at=self._clock.now()), QueueState.DEFERRED)
        except Exception:
            log.exception("cannot put %s back; recover() will", record.id)

    def _crashed(self, record: MessageRecord, exc: Exception) -> None:
        count = record.crash_count + 1
        now = self._clock.now()
        try:
            if count >= self._cfg.poison_threshold:
                held = replace(record, crash_count=count, hold_reason="poison")
                self._spool.update(held, QueueState.HOLD)
                self._tracker.event("POISON", record, detail=f"{type(exc).__name__} after {count} crashes")
            else:
                later = next_attempt(self._cfg, max(record.attempts, 1), now)
                self._spool.update(
                    replace(record, crash_count=count, next_attempt_at=later), QueueState.DEFERRED
                )
        except Exception:
            log.exception("cannot record the crash of %s; it stays active for recover()", record.id)

    async def _attempt(self, record: MessageRecord, data: bytes) -> None:
        open_rcpts = [r for r in record.recipients if not r.done]
        results: dict[str, RecipientResult] = {}
        routes: dict[str, tuple[Route, list[RecipientRecord]]] = {}
        for rcpt in open_rcpts:
            domain = rcpt.address.rpartition("@")[2]
            route = self._router.route(domain)
            if route is None:
                # Exchange's "unreachable" queue: wait for an administrator to add a connector.
                reply = Reply(451, "4.4.0", f"No route to {domain}")
                results[rcpt.address] = Deferred(reply)
                count_delivery("unreachable", "deferred")
                self._tracker.event(
                    "DEFER", record, [rcpt.address], reply=reply_line(reply), detail="unreachable"
                )
            else:
                routes.setdefault(route.next_hop, (route, []))[1].append(rcpt)

        async def one(route: Route, rcpts: list[RecipientRecord]) -> None:
            hop = next_hop_label(route.connector.name, route.kind, route.next_hop)
            started = time.perf_counter()
            got = await self._hops.run(route, self._deliver, record, rcpts, data)
            DELIVERY_SECONDS.labels(hop).observe(time.perf_counter() - started)
            for rcpt in rcpts:
                result = got.get(rcpt.address) or Deferred(Reply(451, "4.3.0", "No result from delivery"))
                results[rcpt.address] = result
                count_delivery(hop, _RESULT_NAMES[type(result)])
            self._tracker.results(record, route, rcpts, got)

        async with asyncio.TaskGroup() as group:
            for route, rcpts in routes.values():
                group.create_task(one(route, rcpts))
        await self._conclude(record, results, data)

    async def _conclude(
        self, record: MessageRecord, results: dict[str, RecipientResult], data: bytes
    ) -> None:
        now = self._clock.now()
        failed: list[tuple[RecipientRecord, str]] = []
        recipients: list[RecipientRecord] = []
        for rcpt in record.recipients:
            result = results.get(rcpt.address)
            if result is None:
                recipients.append(rcpt)
                continue
            status = {
                Delivered: RecipientStatus.DELIVERED,
                Deferred: RecipientStatus.DEFERRED,
                Failed: RecipientStatus.FAILED,
            }[type(result)]
            rcpt = replace(
                rcpt, status=status, attempts=rcpt.attempts + 1, last_reply=reply_line(result.reply)
            )
            if status is RecipientStatus.FAILED:
                failed.append((rcpt, rcpt.last_reply))
            recipients.append(rcpt)
        record = replace(
            record,
            recipients=tuple(recipients),
            attempts=record.attempts + 1,
            first_attempt_at=record.first_attempt_at if record.first_attempt_at is not None else now,
        )

        if is_expired(self._cfg, record.received_at, now):
            expired = [r for r in record.recipients if not r.done]
            if expired:
                self._tracker.event("EXPIRE", record, [r.address for r in expired])
                gone: list[RecipientRecord] = []
                for rcpt in record.recipients:
                    if not rcpt.done:
                        text = expiry_reply(record, rcpt)
                        rcpt = replace(rcpt, status=RecipientStatus.FAILED, last_reply=text)
                        failed.append((rcpt, text))
                    gone.append(rcpt)
                record = replace(record, recipients=tuple(gone))

        if failed and not await self._try_dsn(record, failed, "failure", data, now):
            # The sender must hear of the failure: keep those recipients open, so the next attempt
            # fails them again (or expires them again) and queues the notice then.
            untold = {r.address for r, _ in failed}
            record = replace(record, recipients=tuple(
                replace(r, status=RecipientStatus.DEFERRED) if r.address in untold else r
                for r in record.recipients
            ))  # fmt: skip
        if needs_delay_notice(self._cfg, record, now):
            waiting = [(r, r.last_reply) for r in record.recipients if r.status is RecipientStatus.DEFERRED]
            if await self._try_dsn(record, waiting, "delay", data, now):
                record = replace(record, delay_notified=True)

        if all(r.done for r in record.recipients):
            await self._record(functools.partial(self._spool.finish, record.id), record.id)
        else:
            later = next_attempt(self._cfg, record.attempts, now)
            update = functools.partial(
                self._spool.update, replace(record, next_attempt_at=later), QueueState.DEFERRED
            )
            await self._record(update, record.id)

    async def _record(self, write: Callable[[], None], msg_id: str) -> None:
        """Write the outcome of an attempt; if the spool refuses (full, read-only), keep trying.

        Such a refusal is no crash of this message: counting it would park good mail as poison
        during a disk-full spell, and leaving the record in ACTIVE would strand it there until
        the next restart. The attempt's outcome is kept and written once the spool takes it.
        """
        try:
            await asyncio.to_thread(write)
        except QueueError as exc:
            log.error("cannot record the attempt on %s (%s); retrying every scan", msg_id, exc)
            self._record_later(write, msg_id)

    def _record_later(self, write: Callable[[], None], msg_id: str) -> None:
        def again() -> None:
            self._pending_writes.discard(handle)
            try:
                write()
            except KeyError:
                return  # removed by an administrator meanwhile
            except QueueError:
                self._record_later(write, msg_id)
                return
            self.notify(msg_id)

        handle = asyncio.get_running_loop().call_later(self._cfg.scan_interval, again)
        self._pending_writes.add(handle)

    async def _try_dsn(
        self,
        record: MessageRecord,
        about: Sequence[tuple[RecipientRecord, str]],
        kind: DsnKind,
        data: bytes,
        now: float,
    ) -> bool:
        """Queue a notice; False if the spool refused it (full or read-only disk).

        Such a refusal is no crash of the message: counting it would park it as poison during a
        disk-full spell. The caller keeps the notice owed, so it is queued at a later attempt.
        """
        try:
            await self._send_dsn(record, about, kind, data, now)
        except QueueError as exc:
            log.error("cannot queue the %s notice about %s (%s); it is sent at a later attempt",
                      kind, record.id, exc)  # fmt: skip
            return False
        return True

    async def _send_dsn(
        self,
        record: MessageRecord,
        about: Sequence[tuple[RecipientRecord, str]],
        kind: DsnKind,
        data: bytes,
        now: float,
    ) -> None:
        told = [(r, text) for r, text in about if wants_dsn(record, r, kind)]
        if not told:
            return
        until = record.received_at + self._cfg.expiration
        host = self._config.server.hostname
        # RFC 8689 §4.4: a notice about a REQUIRETLS message returns only its headers (as if
        # RET=HDRS) and travels under REQUIRETLS itself, so the body never leaks in clear.
        about_record = replace(record, ret="HDRS") if record.require_tls else record
        body = build_dsn(about_record, told, kind, data, host, now, retry_until=until)
        dsn = MessageRecord(
            id="",
            mail_from="",
            recipients=(RecipientRecord(record.mail_from),),
            received_at=now,
            size=len(body),
            connector="dsn",
            require_tls=record.require_tls,
        )
        dsn_id = await self._spool.accept(dsn, body)
        self._tracker.event(
            "DSN", record, [r.address for r, _ in told], detail=f"{kind} notice queued as {dsn_id}"
        )
        self.arrived(dsn_id)
