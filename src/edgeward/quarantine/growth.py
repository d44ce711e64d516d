"""The quarantine growth watch: an event when more than a threshold arrived in 24 hours.

A quarantine that suddenly fills is an outbreak, a spam wave or a filter gone wrong; each needs
a person. Every ``check_interval`` the entries quarantined in the last day are counted; above
``[notify] quarantine_growth_threshold`` (0 is off) a ``quarantine_growth`` event is emitted
when the count first crosses it, and again at most once a day while it stays above, so a long
wave is a daily reminder, not an hourly one. Run by the gateway under the task supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from edgeward.notify.events import Event, EventSink
from edgeward.quarantine.store import QuarantineStore

__all__ = ["GrowthWatch", "run_growth_watch"]

log = logging.getLogger(__name__)

DAY = 86400.0


class GrowthWatch:
    """One check at a time; keeps when it last alarmed."""

    def __init__(self, store: QuarantineStore, sink: EventSink, now: Callable[[], float] = time.time) -> None:
        self.store = store
        self.sink = sink
        self._now = now
        self._alarmed_at: float | None = None

    def recent(self) -> int:
        since = self._now() - DAY
        return sum(1 for entry in self.store.list() if entry.quarantined_at >= since)

    def check(self, threshold: int) -> int:
        """Count, and emit if above ``threshold``; returns the count."""
        count = self.recent()
        now = self._now()
        if threshold <= 0 or count <= threshold:
            self._alarmed_at = None
            return count
        if self._alarmed_at is None or now - self._alarmed_at >= DAY:
            self._alarmed_at = now
            self.sink.emit(Event.make(
                "quarantine_growth", "warning",
                f"{count} messages quarantined in 24 hours (threshold {threshold})",
                entries=count, threshold=threshold,
            ))  # fmt: skip
        return count


async def run_growth_watch(
    watch: GrowthWatch, threshold: Callable[[], int], interval: Callable[[], float]
) -> None:
    """Check every ``interval()`` seconds until cancelled (both read again after a reload)."""
    while True:
        try:
            await asyncio.to_thread(watch.check, threshold())
        except Exception:
            log.exception("quarantine growth check failed")
        await asyncio.sleep(max(interval(), 1.0))
