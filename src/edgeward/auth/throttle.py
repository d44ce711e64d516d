"""Failed-AUTH throttling per source address, in memory (Exchange's MaxLogonFailures).

This module owns :class:`Throttle`. The session reports each failed AUTH with
:meth:`Throttle.failed` and each success with :meth:`Throttle.succeeded`, and asks
:meth:`Throttle.blocked` before it starts an exchange. Failures are counted in a sliding
``window``; the ``max_failures``-th failure (3 by default, as Exchange's MaxLogonFailures)
locks the source out of AUTH for ``lockout`` seconds (15 minutes by default). Every failure
returns a :class:`FailureVerdict`: wait ``tarpit`` seconds (Exchange's AuthTarpitInterval, 5 s)
before answering ``reply``, and close the connection when ``disconnect`` is set
(``421 4.7.0``).

Addresses are grouped as attackers get them: an IPv4 address alone, an IPv6 address by its
``/64`` (one customer's subnet; ``ipv6_prefix``), an IPv4-mapped IPv6 address as IPv4.

Security: memory is bounded: at most ``max_tracked`` sources with failures and as many
lockouts are kept, the least recently touched evicted first, and expired entries are dropped as
they are met, so a flood of sources costs a fixed amount of memory. Lockouts are kept apart
from failure counts so a flood of new failures can only evict the oldest lockouts. A success
clears the source's failure count (``reset_on_success``) so users who mistype are not punished
later; a client that also holds one valid account can use that to keep guessing at two
passwords per success, which an operator can prevent by turning ``reset_on_success`` off.
State is per process and lost at restart; shared lockouts belong in the state store later.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass

from edgeward.auth.sasl import AUTH_INVALID
from edgeward.ports import Clock, SystemClock
from edgeward.types import Reply

__all__ = [
    "AUTH_LOCKED_OUT",
    "AUTH_TOO_MANY_FAILURES",
    "FailureVerdict",
    "Throttle",
    "source_key",
]

# The failure that reaches the limit: answer, then close (RFC 5321 §3.8: 421 closes).
AUTH_TOO_MANY_FAILURES = Reply(421, "4.7.0", "Too many authentication failures, closing connection")
# AUTH from a locked-out source, before any exchange starts (RFC 4954 §6: 454 4.7.0).
AUTH_LOCKED_OUT = Reply(454, "4.7.0", "Temporary authentication failure, try again later")


@dataclass(frozen=True, slots=True)
class FailureVerdict:
    """What the session does after a failed AUTH: wait ``tarpit`` s, send ``reply``, maybe close."""

    reply: Reply
    tarpit: float
    disconnect: bool
    failures: int


def source_key(ip: str, ipv6_prefix: int = 64) -> str:
    """The throttled unit for ``ip``: the IPv4 address, or the IPv6 network of ``ipv6_prefix`` bits."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip  # not an address (a Unix socket peer, say): throttle the name as given
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, ipv6_prefix), strict=False))
    return str(addr)


class Throttle:
    """Failure counts and lockouts per source, bounded in time and space."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        max_failures: int = 3,
        window: float = 900.0,
        lockout: float = 900.0,
        auth_tarpit: float = 5.0,
        max_tracked: int = 10_000,
        ipv6_prefix: int = 64,
        reset_on_success: bool = True,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if window <= 0 or lockout < 0 or auth_tarpit < 0:
            raise ValueError("window must be positive; lockout and auth_tarpit not negative")
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        if not 0 <= ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be between 0 and 128")
        self._clock = clock or SystemClock()
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.auth_tarpit = auth_tarpit
        self.max_tracked = max_tracked
        self.ipv6_prefix = ipv6_prefix
        self.reset_on_success = reset_on_success
        # source -> times of recent failures (at most max_failures kept), least recent first
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        # source -> time the lockout ends, least recent first
        self._locked: OrderedDict[str, float] = OrderedDict()

    def blocked(self, ip: str) -> bool:
        """Whether ``ip`` is locked out of AUTH now (answer :data:`AUTH_LOCKED_OUT`)."""
        key = source_key(ip, self.ipv6_prefix)
        until = self._locked.get(key)
        if until is None:
            return False
        if self._clock.now() >= until:
            del self._locked[key]
            return False
        return True

    def failed(self, ip: str) -> FailureVerdict:
        """Count one failed AUTH from ``ip``; what the session does next."""
        now = self._clock.now()
        key = source_key(ip, self.ipv6_prefix)
        times = self._failures.pop(key, None)
        if times is None:
            times = deque(maxlen=self.max_failures)
        while times and now - times[0] >= self.window:
            times.popleft()
        times.append(now)
        count = len(times)
        if count >= self.max_failures:
            # The limit is reached: lock the source out and forget its count, so the lockout
            # ends cleanly instead of the next single failure locking it again at once.
            self._locked.pop(key, None)
            self._locked[key] = now + self.lockout
            self._trim(self._locked)
            return FailureVerdict(AUTH_TOO_MANY_FAILURES, self.auth_tarpit, True, count)
        self._failures[key] = times
        self._trim(self._failures)
        return FailureVerdict(AUTH_INVALID, self.auth_tarpit, False, count)

    def succeeded(self, ip: str) -> None:
        """A successful AUTH from ``ip``: forget its failures (see ``reset_on_success``)."""
        if self.reset_on_success:
            self._failures.pop(source_key(ip, self.ipv6_prefix), None)

    def failures(self, ip: str) -> int:
        """Failures of ``ip`` still inside the window (for logs and tests)."""
        times = self._failures.get(source_key(ip, self.ipv6_prefix))
        if not times:
            return 0
        now = self._clock.now()
        return sum(1 for t in times if now - t < self.window)

    def __len__(self) -> int:
        """How many sources are tracked (failures plus lockouts)."""
        return len(self._failures) + len(self._locked)

    def _trim(self, table: OrderedDict[str, deque[float]] | OrderedDict[str, float]) -> None:
        self._expire()
        while len(table) > self.max_tracked:
            table.popitem(last=False)

    def _expire(self) -> None:
        # Drop a few expired entries from the old end at each write: amortised O(1), and the
        # tables never hold much that has expired.
        now = self._clock.now()
        for _ in range(2):
            if self._locked:
                key, until = next(iter(self._locked.items()))
                if now >= until:
                    del self._locked[key]
            if self._failures:
                key, times = next(iter(self._failures.items()))
                if not times or now - times[-1] >= self.window:
                    del self._failures[key]
