"""The transform contract: a change to an accepted message, and what it may know about it.

A transform is a function of the bytes (``Transform.apply``). One that must also write
something (the strip transform keeps the original in the quarantine) is an ``AsyncTransform``
as well: the session awaits its ``apply_async``, which does the blocking part in a worker
thread, so a file write with fsync never stalls the other sessions on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from edgeward.filters.base import SessionInfo
from edgeward.filters.verdict import Verdict
from edgeward.queue.model import MessageRecord
from edgeward.types import Address


@dataclass(frozen=True, slots=True)
class Accepted:
    """An accepted message's circumstances: its id, session, envelope and verdict."""

    msg_id: str
    info: SessionInfo
    fqdn: str
    recipients: tuple[Address, ...]
    verdict: Verdict
    tls_active: bool = False
    smtputf8: bool = False
    mail_from: Address | None = None  # the envelope sender (for the quarantine of a changed message)
    # The queue record the message gets (envelope, client, connector, DSN parameters), so a
    # copy kept in the quarantine is released as it arrived.
    record: MessageRecord | None = None


class Transform(Protocol):
    """Changes an accepted message; never refuses it (refusing is an agent's job)."""

    name: str

    def apply(self, data: bytes, accepted: Accepted) -> bytes: ...


@runtime_checkable
class AsyncTransform(Protocol):
    """A transform with I/O to do: awaited by the session instead of ``apply`` being called."""

    name: str

    def apply(self, data: bytes, accepted: Accepted) -> bytes: ...

    async def apply_async(self, data: bytes, accepted: Accepted) -> bytes: ...
