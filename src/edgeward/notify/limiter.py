"""Per-kind rate limiting with aggregation: one notice per kind per interval, the rest counted.

The first event of a kind goes out at once and opens a window of ``interval`` seconds. Events of
the same kind within the window are not sent one by one; they are collected into one pending
:class:`Batch` (the count, the first and last time, the first few events as samples), which goes
out when the window ends ("... and 37 more"), and opens the next window. So a burst of 500
infections gives one notice at once and one digest per interval after it, never 500 mails,
and nothing is lost from the count.

Pure logic over an injected monotonic clock (``ports.Clock``): no tasks, no sleeping; the
notifier asks :meth:`RateLimiter.due` at :meth:`RateLimiter.next_deadline`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edgeward.notify.events import Event

__all__ = ["MAX_SAMPLES", "Batch", "RateLimiter"]

MAX_SAMPLES = 5
MAX_KEYS = 1000  # keys are kinds (and engine names): this only bounds a misuse


@dataclass(slots=True)
class Batch:
    """Events of one key sent as one notice: ``count`` in all, the first few kept as samples."""

    key: str
    samples: list[Event] = field(default_factory=list)
    count: int = 0

    @property
    def first(self) -> Event:
        return self.samples[0]

    @property
    def more(self) -> int:
        """Events counted but not shown as samples."""
        return self.count - len(self.samples)

    def add(self, event: Event) -> None:
        self.count += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(event)


@dataclass(slots=True)
class _Window:
    opened: float
    pending: Batch | None = None


class RateLimiter:
    """One notice per key per ``interval`` seconds; see the module docstring."""

    def __init__(self, interval: float, monotonic: Callable[[], float]) -> None:
        self.interval = interval
        self._monotonic = monotonic
        self._windows: dict[str, _Window] = {}

    def offer(self, event: Event) -> list[Batch]:
        """What to send now because ``event`` arrived (nothing if it was counted into a window)."""
        now = self._monotonic()
        key = event.key
        window = self._windows.get(key)
        if window is None or now - window.opened >= self.interval:
            out = self._close(key) if window is not None else []
            if len(self._windows) >= MAX_KEYS and key not in self._windows:
                out += self.flush()
            self._windows[key] = _Window(now)
            batch = Batch(key)
            batch.add(event)
            return [*out, batch]
        if window.pending is None:
            window.pending = Batch(key)
        window.pending.add(event)
        return []

    def _close(self, key: str) -> list[Batch]:
        window = self._windows.pop(key)
        return [window.pending] if window.pending is not None else []

    def due(self) -> list[Batch]:
        """Digests whose window has ended; each opens the next window (it is that window's notice)."""
        now = self._monotonic()
        out: list[Batch] = []
        for key, window in list(self._windows.items()):
            if now - window.opened < self.interval:
                continue
            if window.pending is None:
                del self._windows[key]  # a quiet window: the next event goes out at once
            else:
                out.append(window.pending)
                self._windows[key] = _Window(now)
        return out

    def next_deadline(self) -> float | None:
        """The monotonic time the next digest is due, or None when nothing is pending."""
        ends = [w.opened + self.interval for w in self._windows.values() if w.pending is not None]
        return min(ends, default=None)

    def flush(self) -> list[Batch]:
        """Every pending digest now (at a stop, or when asked): counted events are never dropped."""
        out = [w.pending for w in self._windows.values() if w.pending is not None]
        for window in self._windows.values():
            window.pending = None
        return out

    def pending(self) -> int:
        """Events counted and not yet sent."""
        return sum(w.pending.count for w in self._windows.values() if w.pending is not None)
