"""Rate limiting and aggregation, on a FakeClock: one notice per kind per interval, none lost."""

from __future__ import annotations

import asyncio

from edgeward.notify.events import Event
from edgeward.notify.limiter import MAX_SAMPLES, Batch, RateLimiter
from edgeward.notify.notifier import Notifier
from edgeward.testing.clock import FakeClock


def _virus(n: int) -> Event:
    return Event.make("virus", "warning", f"infection {n}", signature=f"Sig{n}")


def test_first_goes_out_the_rest_are_counted_into_one_digest() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, clock.monotonic)
    first = limiter.offer(_virus(0))
    assert [(b.count, b.first.summary) for b in first] == [(1, "infection 0")]
    for n in range(1, 38):
        clock.advance(1)
        assert limiter.offer(_virus(n)) == []
    assert limiter.pending() == 37
    assert limiter.due() == []  # the window is still open
    clock.advance(600 - 37)
    [digest] = limiter.due()
    assert digest.count == 37
    assert [e.summary for e in digest.samples] == [f"infection {n}" for n in range(1, 1 + MAX_SAMPLES)]
    assert digest.more == 37 - MAX_SAMPLES
    assert limiter.pending() == 0
    # The digest was that window's notice: the next event within the interval waits again.
    clock.advance(10)
    assert limiter.offer(_virus(99)) == []
    assert limiter.next_deadline() == clock.monotonic() - 10 + 600


def test_a_quiet_window_lets_the_next_event_through_at_once() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, clock.monotonic)
    limiter.offer(_virus(0))
    clock.advance(601)
    assert limiter.due() == []
    assert limiter.next_deadline() is None
    assert [b.count for b in limiter.offer(_virus(1))] == [1]


def test_an_event_after_a_missed_deadline_sends_the_digest_first() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock.monotonic)
    limiter.offer(_virus(0))
    limiter.offer(_virus(1))
    clock.advance(61)
    out = limiter.offer(_virus(2))
    assert [(b.count, b.first.summary) for b in out] == [(1, "infection 1"), (1, "infection 2")]


def test_kinds_and_engines_are_limited_apart() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, clock.monotonic)
    assert limiter.offer(_virus(0))
    down = Event.make("engine_down", "error", "clamd down", engine="clamd")
    assert limiter.offer(down)
    assert limiter.offer(Event.make("engine_down", "error", "yara down", engine="yara"))
    assert limiter.offer(Event.make("engine_up", "notice", "clamd up", engine="clamd"))
    assert limiter.offer(down) == []  # the same engine again, within the window


def test_flush_sends_every_pending_count() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, clock.monotonic)
    for n in range(5):
        limiter.offer(_virus(n))
    limiter.offer(Event.make("quarantine_growth", "warning", "q"))
    [digest] = limiter.flush()
    assert digest.count == 4 and limiter.pending() == 0 and limiter.flush() == []


class Recording:
    name = "recording"

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    async def send(self, batch: Batch) -> str:
        self.batches.append(batch)
        return "recorded"

    async def close(self) -> None:
        return None


class Failing(Recording):
    name = "failing"

    async def send(self, batch: Batch) -> str:
        raise OSError("receiver down")


async def test_notifier_bursts_become_bounded_notices_and_a_failing_channel_costs_nothing() -> None:
    clock = FakeClock()
    good = Recording()
    notifier = Notifier([Failing(), good], interval=600, clock=clock)
    for n in range(20):
        notifier.emit(_virus(n))
    await notifier.drain()
    assert [b.count for b in good.batches] == [1]
    assert notifier.failures == 1  # logged, and the other channel still got it
    await notifier.flush()
    assert [b.count for b in good.batches] == [1, 19]
    assert sum(b.count for b in good.batches) == 20


async def test_emit_never_blocks_and_counts_what_a_full_queue_drops() -> None:
    notifier = Notifier([Recording()], interval=600, queue_size=3, clock=FakeClock())
    for n in range(10):
        notifier.emit(_virus(n))  # no await: it must return at once
    assert notifier.dropped == 7


async def test_the_run_loop_sends_the_digest_when_the_window_ends() -> None:
    # Real time for the loop's wait, a short interval: the loop must wake for the digest
    # without any new event arriving.
    good = Recording()
    notifier = Notifier([good], interval=0.2)
    task = asyncio.get_running_loop().create_task(notifier.run())
    try:
        for n in range(4):
            notifier.emit(_virus(n))
        for _ in range(200):
            if sum(b.count for b in good.batches) == 4:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert [b.count for b in good.batches] == [1, 3]
