"""Protocols for every outside service the gateway talks to.

Code above this layer asks for these interfaces, never for a concrete client, so that a test
can hand in the fakes of ``edgeward.testing`` and production code the adapters of
``edgeward.net``. ``runtime`` is the one place that picks implementations.
"""

from __future__ import annotations

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
