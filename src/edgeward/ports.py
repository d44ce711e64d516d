"""Protocols for every outside service the gateway talks to.

Code above this layer asks for these interfaces, never for a concrete client, so that a test
can hand in the fakes of ``edgeward.testing`` and production code the adapters of
``edgeward.net``. ``runtime`` is the one place that picks implementations.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Wall-clock time in seconds since the epoch; schedules are pure functions of it."""

    def now(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()


@dataclass(frozen=True, slots=True)
class MxHost:
    preference: int
    host: str


class ResolverError(Exception):
    """A DNS lookup failed.

    ``permanent`` is true for answers that will not change on retry (NXDOMAIN, null MX), false
    for time-outs and server failures, which must be retried rather than bounced.
    """

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Resolver(Protocol):
    """The DNS lookups the gateway needs."""

    async def mx(self, domain: str) -> Sequence[MxHost]: ...

    async def addresses(self, host: str) -> Sequence[str]: ...

    async def ptr(self, ip: str) -> Sequence[str]: ...

    async def txt(self, name: str) -> Sequence[str]: ...


class DnsFailure(enum.Enum):
    """Why a query has no answer. Only NXDOMAIN and INVALID are facts about the name; the others
    are facts about the path to it, so a check must treat them as "unknown", never as "absent"."""

    NXDOMAIN = "nxdomain"  # the name does not exist (RCODE 3)
    SERVFAIL = "servfail"  # server failure or refusal (RCODE 2, 5); bogus data on a validating resolver
    TIMEOUT = "timeout"  # no answer within the time limit
    INVALID = "invalid"  # the name cannot be asked (a label over 63 octets, a name over 255)


class DnsError(ResolverError):
    """A query that has no answer, with the reason as a :class:`DnsFailure`."""

    def __init__(self, message: str, failure: DnsFailure) -> None:
        super().__init__(message, permanent=failure in (DnsFailure.NXDOMAIN, DnsFailure.INVALID))
        self.failure = failure


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """The records of one type at one name; empty for NODATA (the name exists, the type does not).

    ``records`` are presentation strings: A/AAAA the address; TXT the character-strings of one
    record concatenated (RFC 7208 §3.3) and decoded as UTF-8 with replacement; MX ``"pref host"``;
    PTR, CNAME and NS the target. Names are lower case without the final dot. ``authenticated``
    is the resolver's AD flag (RFC 4035 §3.2.3), believed only for resolvers the administrator
    chose.
    """

    records: tuple[str, ...]
    authenticated: bool = False


class DnsLookup(Protocol):
    """One DNS question, the primitive the anti-spam checks (SPF, DKIM, DMARC, DNSBL) build on.

    Raises :class:`DnsError` for NXDOMAIN, server failures and time-outs; CNAMEs are followed by
    the resolver, so an answer holds the records at the end of the chain.
    """

    async def query(self, name: str, rdtype: str) -> DnsAnswer: ...
