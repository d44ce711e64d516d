"""The Clock port: the system clock and the shipped FakeClock keep the same promises."""

from __future__ import annotations

import pytest

from edgeward.ports import Clock, SystemClock
from edgeward.testing.clock import FakeClock


@pytest.mark.parametrize("clock", [SystemClock(), FakeClock()], ids=["system", "fake"])
def test_both_are_clocks_whose_monotonic_reading_never_goes_back(clock: Clock) -> None:
    assert isinstance(clock, Clock)
    readings = [clock.monotonic() for _ in range(1000)]
    assert readings == sorted(readings)
    assert clock.now() > 1_600_000_000  # seconds since the epoch, not an arbitrary origin


def test_advance_moves_both_readings() -> None:
    clock = FakeClock(1000.0, monotonic_start=5.0)
    clock.advance(2.5)
    assert (clock.now(), clock.monotonic()) == (1002.5, 7.5)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_a_wall_clock_step_leaves_the_monotonic_reading_alone() -> None:
    clock = FakeClock(1000.0, monotonic_start=5.0)
    clock.set(400.0)
    assert (clock.now(), clock.monotonic()) == (400.0, 5.0)
    clock.set(5000.0)
    assert (clock.now(), clock.monotonic()) == (5000.0, 5.0)
