"""A clock for tests: it moves only when told, so expiry and schedules are tested without waiting.

:class:`FakeClock` implements :class:`edgeward.ports.Clock`. ``advance()`` moves both readings,
as time passing does; ``set()`` steps only the wall clock (forward or back, as an NTP step or
an administrator does) and leaves ``monotonic()`` alone, which is the difference the two
readings exist for.
"""

from __future__ import annotations

# 2026-01-01T00:00:00Z: a fixed, realistic epoch so logged times and ids look like real ones.
DEFAULT_START = 1_767_225_600.0


class FakeClock:
    """``now()`` starts at ``start``; ``monotonic()`` starts at ``monotonic_start``."""

    def __init__(self, start: float = DEFAULT_START, *, monotonic_start: float = 1000.0) -> None:
        self._wall = float(start)
        self._mono = float(monotonic_start)

    def now(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass (not negative: time passing never goes back)."""
        if seconds < 0:
            raise ValueError("time does not pass backwards; use set() to step the wall clock")
        self._wall += seconds
        self._mono += seconds

    def set(self, wall: float) -> None:
        """Step the wall clock to ``wall``; the monotonic reading does not move."""
        self._wall = float(wall)
