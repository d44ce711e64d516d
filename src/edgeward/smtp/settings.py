"""What a session configures on the SMTP core: limits, advertised extensions, the command table.

Kept apart from ``connection`` so that the state-driving code reads in one sitting; the
connection module re-exports ``ProtocolLimits`` and ``Extensions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgeward.smtp.spill import SPILL_ABOVE
from edgeward.smtp.state import Input
from edgeward.types import Reply


@dataclass(frozen=True)
class ProtocolLimits:
    max_line: int = 2048  # command line incl. CRLF (RFC 5321 §4.5.3.1.4 says 512; lenient, bounded)
    max_message_size: int = 10 * 1024 * 1024
    max_header_size: int = 64 * 1024
    max_recipients: int = 200
    max_commands: int = 1000  # commands per connection, then 421 4.7.0 and close
    max_protocol_errors: int = 5  # bad/unknown/out-of-sequence commands, then 421 4.7.0 and close
    bare_lf: Literal["reject", "normalize"] = "reject"
    # Past this many bytes a message goes to ``ServerConnection.spill_to`` (a file) as it arrives
    # instead of staying in memory; the connection keeps it in memory when no sink is given.
    spill_above: int = SPILL_ABOVE


@dataclass(frozen=True)
class Extensions:
    hostname: str  # FQDN for the EHLO reply first line
    size: int  # announced in SIZE (0: no fixed maximum, RFC 1870)
    starttls: bool  # advertise STARTTLS (the session turns it off once TLS is up)
    auth_mechanisms: tuple[str, ...] = ()  # advertised only if non-empty and TLS is active
    auth_before_tls: bool = False  # advertise AUTH without TLS too (insecure; an explicit setting)
    requiretls: bool = False  # RFC 8689; advertised, and its MAIL parameter accepted, only under TLS
    chunking: bool = True
    dsn: bool = True
    smtputf8: bool = True
    pipelining: bool = True


VERBS = {
    "HELO": Input.HELO,
    "EHLO": Input.EHLO,
    "MAIL": Input.MAIL,
    "RCPT": Input.RCPT,
    "DATA": Input.DATA,
    "BDAT": Input.CHUNK,
    "RSET": Input.RSET,
    "NOOP": Input.NOOP,
    "QUIT": Input.QUIT,
    "VRFY": Input.VRFY,
    "HELP": Input.HELP,
    "STARTTLS": Input.STARTTLS,
    "AUTH": Input.AUTH,
}
UNIMPLEMENTED = frozenset({"EXPN", "TURN", "ETRN", "ATRN", "SEND", "SOML", "SAML", "VERB", "ONEX"})
CROSS_PROTOCOL = frozenset({"GET", "POST", "PUT", "HEAD", "CONNECT", "OPTIONS", "DELETE", "PATCH", "TRACE"})
NO_ARGUMENTS = frozenset({Input.RSET, Input.QUIT, Input.DATA, Input.STARTTLS})


def counts_as_error(reply: Reply) -> bool:
    """Permanent protocol (5.5.x) and address-syntax (5.1.x) refusals count; limits
    (452 4.5.3, 552 5.3.4) and policy (553 5.6.7) do not."""
    return reply.enhanced is not None and reply.enhanced[:4] in ("5.5.", "5.1.")
