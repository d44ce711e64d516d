"""Frozen value objects shared by every layer.

This module owns the vocabulary of the gateway: an SMTP ``Reply``, a mail ``Address``, the
remote ``Peer``, the ``Envelope`` of one transaction, and what an agent says about it
(``Finding``, ``Action``, ``Outcome``). Nothing here does I/O or imports another part of
Edgeward, so every layer may depend on it.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from dataclasses import dataclass, field

__all__ = [
    "Action",
    "Address",
    "Envelope",
    "Finding",
    "Outcome",
    "Peer",
    "Reply",
    "client_address",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: basic code (RFC 5321), enhanced code (RFC 3463) and text.

    ``text`` may hold several lines separated by ``\\n``; :meth:`to_bytes` turns them into a
    multi-line reply. Every line repeats the enhanced code, as RFC 2034 asks.
    """

    code: int
    enhanced: str | None
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"SMTP reply code out of range: {self.code}")
        if self.enhanced is not None:
            klass = self.enhanced.split(".", 1)[0]
            # RFC 3463: the class digit of the enhanced code matches the reply's class.
            if klass != str(self.code)[0] and not (self.code < 400 and klass == "2"):
                raise ValueError(f"enhanced code {self.enhanced} does not fit reply {self.code}")
        if "\r" in self.text:
            raise ValueError("reply text must not contain CR")

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def lines(self) -> list[str]:
        parts = self.text.split("\n") if self.text else [""]
        out: list[str] = []
        for i, part in enumerate(parts):
            sep = " " if i == len(parts) - 1 else "-"
            body = f"{self.enhanced} {part}" if self.enhanced and part else (self.enhanced or part)
            # No rstrip: an empty 334 challenge is "334 " with its space (RFC 4954 §4).
            out.append(f"{self.code}{sep}{body}")
        return out

    def to_bytes(self) -> bytes:
        return ("\r\n".join(self.lines()) + "\r\n").encode("utf-8", "replace")

    def __str__(self) -> str:
        return " / ".join(self.lines())


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox ``local@domain`` as it travels in the envelope.

    ``local`` keeps its case (RFC 5321 §2.4: the local part may be case-sensitive); ``domain``
    is stored lower-case in its ASCII (IDNA) or UTF-8 form as received. The null reverse-path
    ``<>`` is ``Address.null()``, with empty local and domain.
    """

    local: str
    domain: str

    @classmethod
    def null(cls) -> Address:
        return cls("", "")

    @property
    def is_null(self) -> bool:
        return not self.local and not self.domain

    def __str__(self) -> str:
        if self.is_null:
            return ""
        return f"{self.local}@{self.domain}"

    def bracketed(self) -> str:
        return f"<{self}>"


@dataclass(frozen=True, slots=True)
class Peer:
    """The remote end of a connection, and the local address it reached."""

    ip: str
    port: int
    local_ip: str = ""
    local_port: int = 0

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return client_address(self.ip)


@functools.lru_cache(maxsize=4096)
def client_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``ip`` parsed, an IPv4-mapped IPv6 address as the IPv4 one; raises ValueError.

    Kept for the clients seen last: every stage of a session asks (the exemptions, the IP lists),
    and parsing costs several microseconds each time.
    """
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass(frozen=True, slots=True)
class Envelope:
    """The envelope of one accepted transaction (RFC 5321 §2.3.1)."""

    mail_from: Address
    rcpt_to: tuple[Address, ...]
    helo: str = ""
    mail_params: tuple[tuple[str, str | None], ...] = ()
    rcpt_params: tuple[tuple[tuple[str, str | None], ...], ...] = ()
    smtputf8: bool = False
    body_8bit: bool = False
    envid: str | None = None
    ret: str | None = None


class Action(enum.Enum):
    """What an agent wants done with the command or message it looked at."""

    CONTINUE = "continue"
    ACCEPT = "accept"
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    DISCONNECT = "disconnect"
    # Accept the message with a 250, then throw it away (Exchange's "delete" action).
    DISCARD = "discard"
    # Accept the message with a 250 and hold it in quarantine instead of delivering it.
    QUARANTINE = "quarantine"

    @property
    def is_final(self) -> bool:
        return self is not Action.CONTINUE


@dataclass(frozen=True, slots=True)
class Finding:
    """A named observation made by an agent, e.g. ``RCPT_RELAY_DENIED`` or ``SPF_FAIL``.

    Agents fill ``name``, ``agent`` and ``detail``; the pipeline fills ``stage`` and ``score``
    from the score table, so an agent never decides what its observation weighs.
    """

    name: str
    agent: str
    detail: str = ""
    score: float = 0.0
    stage: str = ""

    def to_dict(self) -> dict[str, str | float]:
        """The form written to the agent and tracking logs."""
        return {
            "name": self.name, "agent": self.agent, "stage": self.stage, "score": self.score,
            "detail": self.detail,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Outcome:
    """The one thing an agent returns."""

    action: Action = Action.CONTINUE
    reply: Reply | None = None
    findings: tuple[Finding, ...] = field(default=())
    headers: tuple[tuple[str, str], ...] = ()
    # A REJECT at RCPT that should end the session once the client's recipients are done: at
    # DATA with none accepted, the session answers and closes (Exchange's blocked IP). Closing
    # at the RCPT itself would cut off the recipients a blocked client may still reach.
    close_after_recipients: bool = False

    def __post_init__(self) -> None:
        if self.action in (Action.REJECT, Action.TEMPFAIL) and self.reply is None:
            raise ValueError(f"{self.action.value} needs a reply")
        if self.action is Action.REJECT and self.reply is not None and not self.reply.is_permanent:
            raise ValueError("a rejection carries a 5xx reply")
        if self.action is Action.TEMPFAIL and self.reply is not None and not self.reply.is_transient:
            raise ValueError("a temporary failure carries a 4xx reply")

    @classmethod
    def proceed(cls, *findings: Finding) -> Outcome:
        if not findings and cls is Outcome:
            return _PROCEED  # most agents at most stages: one shared answer, frozen like any
        return cls(Action.CONTINUE, None, findings)

    @classmethod
    def reject(cls, reply: Reply, *findings: Finding) -> Outcome:
        return cls(Action.REJECT, reply, tuple(findings))

    @classmethod
    def tempfail(cls, reply: Reply, *findings: Finding) -> Outcome:
        return cls(Action.TEMPFAIL, reply, tuple(findings))


_PROCEED = Outcome()
