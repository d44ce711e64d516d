"""What the session noticed about a client's protocol behaviour, for the protocol-analysis agent.

The session is the only code that sees the bytes, so it counts what an agent cannot observe:
talking before the banner (pregreet), pipelining the server never offered, bare LF line endings,
commands the core refused, and junk commands. The counts travel in ``SessionInfo.protocol``, a
frozen value the session replaces as it goes, so an agent reads a consistent snapshot and can
never change what the session saw.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from edgeward.smtp import events as ev
from edgeward.smtp import replies as r

Signal = Literal["pregreet", "pipelining", "bare_lf", "errors", "junk"]


@dataclass(frozen=True, slots=True)
class ProtocolSignals:
    """Counts of each kind of protocol misbehaviour in one session."""

    pregreet: int = 0
    pipelining: int = 0
    bare_lf: int = 0
    errors: int = 0
    junk: int = 0

    def seen(self, signal: Signal) -> ProtocolSignals:
        return replace(self, **{signal: getattr(self, signal) + 1})

    @property
    def total(self) -> int:
        """Misbehaviour so far. Junk commands are left out: RSET and NOOP are ordinary in
        moderation, and only the protocol agent's threshold says when they stop being so."""
        return self.pregreet + self.pipelining + self.bare_lf + self.errors


def signals_of(event: object, buffered: int, esmtp: bool) -> tuple[Signal, ...]:
    """The signals one parsed client event gives.

    ``buffered`` is how many bytes the client sent behind this command before it saw the reply;
    ``esmtp`` whether the session greeted with EHLO (PIPELINING is offered only then). Behind
    EHLO and DATA nothing may follow unanswered even with PIPELINING (RFC 2920 §3.1), and
    without EHLO no command may be pipelined at all. BDAT chunks and message data are bytes,
    not commands, and QUIT ends the talk, so they never count.
    """
    found: list[Signal] = []
    match event:
        case ev.ProtocolViolation(reply=reply):
            found.append("bare_lf" if reply in (r.BARE_LF_IN_COMMAND, r.BARE_LINE_ENDING) else "errors")
        case ev.MessageData(violation=violation) if violation == r.BARE_LINE_ENDING:
            found.append("bare_lf")
        case ev.Noop() | ev.Rset() | ev.Vrfy() | ev.Help():
            found.append("junk")
    unasked = isinstance(event, ev.Helo | ev.Data) or not esmtp
    if buffered and unasked and not isinstance(event, ev.MessageData | ev.BdatChunk | ev.Quit | ev.StartTls):
        found.append("pipelining")
    return tuple(found)
