"""Message rate per source at MAIL (Exchange's MessageRateLimit, Postfix's anvil).

Each receive connector may cap the messages one client address starts per minute
(``message_rate_limit``; 0 means no cap). Over the cap, MAIL gets ``450 4.7.1`` and the client
retries later; sessions with the relay right (the organisation's own servers) and
authenticated users are not limited. Memory is bounded: at most ``max_sources`` addresses are
tracked, the least recently seen forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from edgeward.filters.base import Stage, StageContext
from edgeward.ports import Clock, SystemClock
from edgeward.types import Finding, Outcome, Reply

RATE_EXCEEDED = Reply(450, "4.7.1", "Message rate limit exceeded, try again later")
WINDOW = 60.0


class MessageRateLimit:
    """Cap messages per minute from one client address."""

    name = "message-rate"
    stages = frozenset({Stage.MAIL})
    antispam = False
    fail_open = False

    def __init__(self, clock: Clock | None = None, max_sources: int = 100_000) -> None:
        self._clock = clock if clock is not None else SystemClock()
        self._max_sources = max_sources
        self._seen: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        limit = ctx.session.connector.message_rate_limit
        if limit <= 0 or ctx.session.may_relay or ctx.session.authenticated:
            return Outcome.proceed()
        key = (ctx.session.connector.name, ctx.session.peer.ip)
        now = self._clock.monotonic()
        times = self._seen.pop(key, None) or deque()
        while times and now - times[0] >= WINDOW:
            times.popleft()
        self._seen[key] = times
        if len(self._seen) > self._max_sources:
            self._seen.popitem(last=False)
        if len(times) >= limit:
            return Outcome.tempfail(RATE_EXCEEDED, Finding("RATE_LIMITED", self.name, f"{len(times)}/min"))
        times.append(now)
        return Outcome.proceed()
