"""The log rate limit: a burst per interval per template, then a count of what was dropped."""

from __future__ import annotations

import logging

import pytest

from edgeward.logs.ratelimit import RateLimitFilter
from edgeward.testing.clock import FakeClock


def test_repeats_past_the_burst_are_dropped_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(monotonic_start=0.0)
    logger = logging.getLogger("edgeward.test-ratelimit")
    limit = RateLimitFilter(burst=3, interval=10, clock=clock)
    logger.addFilter(limit)
    try:
        with caplog.at_level(logging.WARNING, logger=logger.name):
            for i in range(100):
                logger.warning("limit reached for %s", f"192.0.2.{i}")
            logger.warning("another line")
            assert limit.suppressed() == 97
            clock.advance(10)
            logger.warning("limit reached for %s", "198.51.100.1")
    finally:
        logger.removeFilter(limit)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == [
        "limit reached for 192.0.2.0",
        "limit reached for 192.0.2.1",
        "limit reached for 192.0.2.2",
    ]
    assert lines[3] == "another line"  # another template has its own allowance
    assert lines[4] == "limit reached for 198.51.100.1 (97 similar messages suppressed)"
    assert len(lines) == 5
    assert limit.suppressed() == 0
