"""The events the SMTP core hands to the session, one per client command or message.

Every event is a frozen value. The session reads one with ``ServerConnection.next_event()``,
decides, and answers it with ``ServerConnection.send(reply)``; only ``ConnectionClosed`` needs no
answer. ``NeedData`` is not an event but a sentinel: feed more bytes before asking again.

Security: events carry only parsed, validated values (an ``Address``, never the raw path), so no
layer above the core ever re-parses client text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from edgeward.types import Address, Reply

if TYPE_CHECKING:
    from edgeward.message_file import MessageFile

__all__ = [
    "NEED_DATA",
    "Auth",
    "BdatChunk",
    "ConnectionClosed",
    "Data",
    "Event",
    "Helo",
    "Help",
    "MailFrom",
    "MessageData",
    "NeedData",
    "Noop",
    "ProtocolViolation",
    "Quit",
    "RcptTo",
    "Rset",
    "StartTls",
    "Vrfy",
]

Params = tuple[tuple[str, str | None], ...]
BodyType = Literal["7BIT", "8BITMIME", "BINARYMIME"]


class _SentinelMeta(type):
    """A class that is an instance of itself (the h11 trick).

    ``NeedData`` therefore works with ``is``, ``==``, ``isinstance`` and ``match NeedData()``.
    """

    def __repr__(cls) -> str:
        return cls.__name__


class NeedData(_SentinelMeta, metaclass=_SentinelMeta):
    """No complete event yet: call ``receive_data`` with more bytes, then ``next_event`` again."""


NeedData.__class__ = NeedData  # type: ignore[assignment]
NEED_DATA: NeedData = cast(Any, NeedData)


@dataclass(frozen=True, slots=True)
class Helo:
    """HELO (``esmtp=False``) or EHLO (``esmtp=True``) with the name the client gave."""

    name: str
    esmtp: bool


@dataclass(frozen=True, slots=True)
class MailFrom:
    """MAIL FROM. ``address`` is ``Address.null()`` for ``<>``; ``params`` are upper-cased keys
    with values as decoded (xtext already undone for ENVID)."""

    address: Address
    params: Params = ()
    size: int | None = None
    body: BodyType | None = None
    smtputf8: bool = False
    source_route: bool = False  # a source route <@a,@b:...> was present and dropped


@dataclass(frozen=True, slots=True)
class RcptTo:
    """RCPT TO. ``address.domain`` is the routing domain (source routes already dropped);
    ``<Postmaster>`` without a domain gives ``Address("Postmaster", "")``."""

    address: Address
    params: Params = ()
    source_route: bool = False  # a source route <@a,@b:...> was present and dropped


@dataclass(frozen=True, slots=True)
class Data:
    """The DATA command; answer 354 to receive the body, anything else to refuse it."""


@dataclass(frozen=True, slots=True)
class MessageData:
    """The complete message after CRLF.CRLF (DATA) or BDAT LAST.

    ``data`` is unstuffed with CRLF line endings only (BODY=BINARYMIME chunks are passed on as
    sent). When ``violation`` is set the core already knows the message must be refused; the
    session answers that reply and ``data`` is empty. A message larger than the inline budget
    arrives in ``spooled`` (the same bytes in a file, ``smtp.data.SPILL_ABOVE``) and ``data`` is
    empty too.
    """

    data: bytes
    violation: Reply | None = None
    spooled: MessageFile | None = None


@dataclass(frozen=True, slots=True)
class BdatChunk:
    """A non-last BDAT chunk was read (its bytes are kept by the core); answer 250 or refuse."""

    size: int
    last: bool = False


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Vrfy:
    argument: str


@dataclass(frozen=True, slots=True)
class Help:
    argument: str = ""


@dataclass(frozen=True, slots=True)
class StartTls:
    pass


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH mechanism [initial-response]; parsed only (RFC 4954), the session decides."""

    mechanism: str
    initial: str | None = None


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """One client line inside an AUTH exchange, after the session answered ``334`` (RFC 4954 §4).

    The text is passed on as received (base64, or ``*`` to cancel); it is a credential, so it
    must never be logged.
    """

    line: str


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The core refused the input itself; send ``reply``, and close afterwards if ``fatal``.

    ``command`` names the verb whose arguments were refused (``"MAIL"`` for a declared SIZE over
    the limit or a bad address), so the session can track the refusal of a sender or recipient;
    empty for input that never became a command.
    """

    reply: Reply
    fatal: bool = False
    command: str = ""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection (EOF); nothing to answer."""


Event = (
    Helo
    | MailFrom
    | RcptTo
    | Data
    | MessageData
    | BdatChunk
    | Rset
    | Noop
    | Quit
    | Vrfy
    | Help
    | StartTls
    | Auth
    | AuthResponse
    | ProtocolViolation
    | ConnectionClosed
)
