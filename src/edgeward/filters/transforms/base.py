"""The transform contract: a change to an accepted message, and what it may know about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from edgeward.filters.base import SessionInfo
from edgeward.filters.verdict import Verdict
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


class Transform(Protocol):
    """Changes an accepted message; never refuses it (refusing is an agent's job)."""

    name: str

    def apply(self, data: bytes, accepted: Accepted) -> bytes: ...
