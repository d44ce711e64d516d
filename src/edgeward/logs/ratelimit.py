"""A logging filter that lets a repeated line through a few times per interval, then counts.

Under a flood (every refused connection of an attack) one WARNING per event would fill the
disk and bury everything else. Records are grouped by logger, level and message template (the
format string, not the formatted text, so "limit reached for 192.0.2.1" and "... for
192.0.2.2" are the same line). Each group may pass ``burst`` records per ``interval``; the
rest are dropped and counted, and the first record let through after a drop says how many
were suppressed since, so nothing is silently lost from the picture.
"""

from __future__ import annotations

import logging

from edgeward.ports import Clock, SystemClock


class RateLimitFilter(logging.Filter):
    """At most ``burst`` records per ``interval`` seconds per (logger, level, template)."""

    def __init__(self, burst: int = 10, interval: float = 10.0, clock: Clock | None = None) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        self._clock = clock if clock is not None else SystemClock()
        # key -> [window start, passed in window, suppressed since the last record let through]
        self._groups: dict[tuple[str, int, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock.monotonic()
        group = self._groups.get(key)
        if group is None:
            if len(self._groups) > 1000:  # templates are few; this only bounds a misuse
                self._groups.clear()
            group = self._groups[key] = [now, 0, 0]
        if now - group[0] >= self.interval:
            group[0], group[1] = now, 0
        if group[1] >= self.burst:
            group[2] += 1
            return False
        group[1] += 1
        if group[2]:
            record.msg = f"{record.msg} ({int(group[2])} similar messages suppressed)"
            group[2] = 0
        return True

    def suppressed(self) -> int:
        """Records dropped and not yet reported."""
        return int(sum(g[2] for g in self._groups.values()))
