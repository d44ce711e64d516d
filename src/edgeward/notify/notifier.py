"""The notifier: events in, rate-limited notices out to every channel, off the SMTP path.

``emit`` puts an event in a bounded queue and returns; it never blocks and never raises, so an
agent may call it between a scan and its reply. When the queue is full the event is counted
(``dropped``) and logged at most once a minute. One task (:meth:`Notifier.run`, supervised by
the gateway) takes events in order, passes them through the per-kind :class:`RateLimiter`, and
hands each resulting batch to every channel at once, each under ``CHANNEL_TIMEOUT``: a channel
that fails or hangs costs that notice on that channel only (logged), never the other channels
and never mail. The webhook channel queues and retries on its own task.

A stop flushes what the limiter still counts (:meth:`Notifier.close`), so the last "and N
more" is not lost; the e-mail notices it queues are delivered at the latest at the next start.

:meth:`Notifier.test` sends one ``test`` event straight to the chosen channels, bypassing the
limiter, and reports each result (``edgeward notify test``); the webhook's is a real POST.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from edgeward.notify.events import Event
from edgeward.notify.limiter import Batch, RateLimiter
from edgeward.notify.webhook import WebhookChannel, payload
from edgeward.ports import Clock, SystemClock

__all__ = ["Channel", "ChannelResult", "Notifier"]

log = logging.getLogger("edgeward.notify")

CHANNEL_TIMEOUT = 30.0
DROP_LOG_INTERVAL = 60.0


class Channel(Protocol):
    name: str

    async def send(self, batch: Batch) -> str: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ChannelResult:
    channel: str
    ok: bool
    detail: str


class Notifier:
    """Fans events out to ``channels``; see the module docstring."""

    def __init__(
        self, channels: Sequence[Channel], *, interval: float, queue_size: int = 1000,
        clock: Clock | None = None,
    ) -> None:  # fmt: skip
        self.channels = tuple(channels)
        self._clock = clock if clock is not None else SystemClock()
        self.limiter = RateLimiter(interval, self._clock.monotonic)
        self._queue: asyncio.Queue[Event] = asyncio.Queue(queue_size)
        self.dropped = 0
        self.sent = 0
        self.failures = 0
        self._last_drop_log = -DROP_LOG_INTERVAL

    def emit(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            now = self._clock.monotonic()
            if now - self._last_drop_log >= DROP_LOG_INTERVAL:
                self._last_drop_log = now
                log.error("notification queue full; %d event(s) dropped so far", self.dropped)

    async def run(self) -> None:
        """Send notices until cancelled; the webhook channels post from tasks of their own."""
        async with asyncio.TaskGroup() as group:
            for channel in self.channels:
                if isinstance(channel, WebhookChannel):
                    group.create_task(channel.run())
            group.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            deadline = self.limiter.next_deadline()
            wait = None if deadline is None else max(0.0, deadline - self._clock.monotonic())
            batches: list[Batch] = []
            try:
                async with asyncio.timeout(wait):
                    event = await self._queue.get()
                batches += self.limiter.offer(event)
                while not self._queue.empty():  # what arrived meanwhile, in one go
                    batches += self.limiter.offer(self._queue.get_nowait())
            except TimeoutError:
                pass
            batches += self.limiter.due()
            for batch in batches:
                await self.deliver(batch)

    async def deliver(self, batch: Batch, only: str | None = None) -> list[ChannelResult]:
        """``batch`` to every channel (or the one named ``only``) at once; never raises."""
        chosen = [c for c in self.channels if only is None or c.name == only]
        results = await asyncio.gather(*(self._one(c, batch) for c in chosen))
        self.sent += 1
        return list(results)

    async def _one(self, channel: Channel, batch: Batch) -> ChannelResult:
        try:
            async with asyncio.timeout(CHANNEL_TIMEOUT):
                detail = await channel.send(batch)
        except Exception as exc:
            self.failures += 1
            log.error("notification %s (%d event(s)) could not go to %s: %s",
                      batch.key, batch.count, channel.name, exc or type(exc).__name__)  # fmt: skip
            return ChannelResult(channel.name, False, str(exc) or type(exc).__name__)
        return ChannelResult(channel.name, True, detail)

    async def drain(self) -> None:
        """Take every queued event into the limiter and send what is due (tests, stop)."""
        batches: list[Batch] = []
        while not self._queue.empty():
            batches += self.limiter.offer(self._queue.get_nowait())
        for batch in batches:
            await self.deliver(batch)

    async def flush(self) -> None:
        """Send every digest the limiter holds now, after what is queued."""
        await self.drain()
        for batch in self.limiter.flush():
            await self.deliver(batch)

    async def test(self, only: str | None = None) -> list[ChannelResult]:
        """One ``test`` event to the channels now, bypassing the limiter; the webhook is posted."""
        event = Event.make("test", "info", "Edgeward notification test", channel=only or "all")
        batch = Batch(event.key, [event], 1)
        results: list[ChannelResult] = []
        for channel in self.channels:
            if only is not None and channel.name != only:
                continue
            if isinstance(channel, WebhookChannel):
                try:
                    code = await channel.post(payload(batch, channel.hostname))
                    results.append(ChannelResult(channel.name, True, f"HTTP {code}"))
                except Exception as exc:
                    results.append(ChannelResult(channel.name, False, str(exc) or type(exc).__name__))
                continue
            results.append(await self._one(channel, batch))
        return results

    async def close(self) -> None:
        """Flush counted events (bounded in time) and close the channels."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CHANNEL_TIMEOUT):
                await self.flush()
        for channel in self.channels:
            with contextlib.suppress(Exception):
                await channel.close()
