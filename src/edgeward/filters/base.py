"""The agent contract: stages, the context an agent sees, and the ``Agent`` protocol.

Agents decide before the ``250``; they never change a message. An agent is called at each
``Stage`` it registered for, in protocol order (Haraka's hooks, Exchange's SMTP events), and
answers with one ``Outcome``: continue, or a final action with the reply to send, plus named
findings that explain the verdict. Hard controls (relay, size, sender login ...) decide on the
spot; anti-spam agents (``antispam = True``) report findings, which the score table weighs and
the policy decides on at end of data (``filters.verdict``). Anti-spam agents are not called for
a context the exemptions mark exempt (``StageContext.exempt``). Agents that want a header
stamped on an accepted message return it in ``Outcome.headers``, at any stage; the stamps
transform adds it when the message is accepted.

Collaborators (a resolver, the state store, a clock) reach an agent through its constructor,
built in ``runtime``; never through module globals.

Security: an agent sees the session only through ``StageContext``, a read-only view. It cannot
write to the socket, so it cannot break the protocol's state machine or answer twice.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.filters.message import MessageView
from edgeward.filters.signals import ProtocolSignals
from edgeward.headers import HeaderBlock
from edgeward.message_file import MessageFile
from edgeward.types import Address, Finding, Outcome, Peer


class Stage(enum.Enum):
    """The SMTP stages an agent can register for, in protocol order."""

    CONNECT = "connect"
    HELO = "helo"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    EOD = "eod"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What is known about the connection when a stage runs."""

    session_id: str
    peer: Peer
    connector: ReceiveConnectorConfig
    helo: str = ""
    esmtp: bool = False
    tls: str = ""  # e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384"; empty without TLS
    authenticated: str = ""  # authenticated identity; empty for anonymous sessions
    groups: frozenset[str] = frozenset()  # permission groups proven: users, partners, servers
    rights: frozenset[str] = frozenset()  # see edgeward.config.permissions
    peer_names: tuple[str, ...] = ()  # names in a verified client certificate
    protocol: ProtocolSignals = field(default_factory=ProtocolSignals)  # what the session noticed

    @property
    def may_relay(self) -> bool:
        return "relay" in self.rights

    @property
    def bypass_antispam(self) -> bool:
        return "bypass_antispam" in self.rights


@dataclass(frozen=True, slots=True)
class StageContext:
    """The read-only view an agent gets at one stage."""

    stage: Stage
    session: SessionInfo
    mail_from: Address | None = None
    mail_params: Mapping[str, str | None] = field(default_factory=dict)
    recipient: Address | None = None  # the recipient under test at RCPT
    recipients: tuple[Address, ...] = ()  # recipients accepted so far
    data: bytes = b""  # the whole message at EOD (CRLF line endings)
    headers: HeaderBlock | None = None  # parsed header block at EOD
    msg_id: str = ""  # the queue id at EOD (allocated before the agents run); empty before
    message: MessageView | None = None  # the message at EOD, parsed once for every agent
    exempt: str = ""  # why anti-spam does not apply here (filters.exemptions); empty: it does
    # What earlier stages of the session and the open transaction found (filters.verdict.Ledger),
    # so an EOD check can use a result made at MAIL (DMARC reads the SPF result) without state
    # of its own.
    earlier: tuple[Finding, ...] = ()
    # The message at EOD when it is kept in a file (larger than the inline budget,
    # ``smtp.data.SPILL_ABOVE``); then ``data`` is empty and an agent reads ``spooled``.
    spooled: MessageFile | None = None

    @property
    def size(self) -> int:
        """The message's size at EOD, wherever it is kept."""
        return self.spooled.size if self.spooled is not None else len(self.data)


@runtime_checkable
class Agent(Protocol):
    """An anti-abuse check run at one or more SMTP stages."""

    name: str
    stages: frozenset[Stage]
    # Anti-spam agents are skipped where an exemption applies; hard controls never are.
    antispam: bool
    # A dependency outage in a fail-open agent lets mail through instead of answering 451.
    fail_open: bool

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome: ...


def is_antispam(agent: Agent) -> bool:
    return bool(getattr(agent, "antispam", False))


def describe(agent: Agent) -> str:
    """One line for ``edgeward agents list``."""
    stages = ", ".join(s.value for s in Stage if s in agent.stages)
    kind = "anti-spam" if is_antispam(agent) else "hard"
    doc = (type(agent).__doc__ or "").strip().splitlines()
    summary = doc[0] if doc else ""
    return f"{agent.name:<20} {kind:<9} [{stages}] {summary}"
