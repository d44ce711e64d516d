"""Size, hop-count and back-pressure checks.

- ``MessageSize`` refuses at MAIL a declared ``SIZE=`` over the connector's limit (RFC 1870
  §6.1, ``552 5.3.4``) and re-checks the real size at end of data.
- ``HopCount`` refuses at end of data a message with more ``Received:`` headers than the
  connector allows (``554 5.4.6``, RFC 5321 §6.3: a mail loop).
- ``BackPressure`` answers ``452 4.3.1`` at MAIL while the spool's free space is under the
  threshold (Exchange's resource monitoring). Mail already accepted is untouched.
"""

from __future__ import annotations

from collections.abc import Callable

from edgeward.filters.base import Stage, StageContext
from edgeward.ports import Clock, SystemClock
from edgeward.types import Finding, Outcome, Reply

TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
LOOP = Reply(554, "5.4.6", "Too many hops, a mail loop is likely")
NO_SPACE = Reply(452, "4.3.1", "Insufficient system resources, try again later")


class MessageSize:
    """Refuse messages over the connector's size limit."""

    name = "message-size"
    stages = frozenset({Stage.MAIL, Stage.EOD})
    antispam = False
    fail_open = False

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        limit = ctx.session.connector.max_message_size
        if stage is Stage.MAIL:
            declared = ctx.mail_params.get("SIZE")
            if declared and declared.isdigit() and int(declared) > limit:
                return Outcome.reject(TOO_BIG, Finding("SIZE_DECLARED_TOO_BIG", self.name, declared))
        elif ctx.size > limit:
            return Outcome.reject(TOO_BIG, Finding("SIZE_TOO_BIG", self.name, str(ctx.size)))
        return Outcome.proceed()


class HopCount:
    """Refuse messages that have passed through too many hops."""

    name = "hop-count"
    stages = frozenset({Stage.EOD})
    antispam = False
    fail_open = False

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        if ctx.headers is None:
            return Outcome.proceed()
        hops = ctx.headers.count("Received")
        if hops >= ctx.session.connector.max_hop_count:
            # ">=": the Received header this gateway adds would be one more than allowed.
            return Outcome.reject(LOOP, Finding("HOP_COUNT_EXCEEDED", self.name, str(hops)))
        return Outcome.proceed()


class BackPressure:
    """Stop taking new mail while the spool disk is nearly full."""

    name = "back-pressure"
    stages = frozenset({Stage.MAIL})
    antispam = False
    fail_open = False

    def __init__(
        self, free_bytes: Callable[[], int], threshold: int, recheck: float = 1.0, clock: Clock | None = None
    ) -> None:
        self._clock = clock if clock is not None else SystemClock()
        self._free_bytes = free_bytes
        self.threshold = threshold
        # statvfs is cheap but not free; at thousands of MAIL commands a second, once a second
        # is plenty to notice a disk filling up.
        self._recheck = recheck
        self._checked_at = float("-inf")
        self._free = 0

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        now = self._clock.monotonic()
        if now - self._checked_at >= self._recheck:
            self._free = self._free_bytes()
            self._checked_at = now
        if self._free < self.threshold:
            return Outcome.tempfail(NO_SPACE, Finding("BACK_PRESSURE_DISK", self.name, str(self._free)))
        return Outcome.proceed()
