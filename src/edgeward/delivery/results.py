"""Per-recipient delivery results and the parsing of SMTP reply text.

This module owns the three outcomes a delivery attempt gives each recipient (RFC 5321 §4.2.1:
2xx delivered, 4xx try again later, 5xx give up) and the helpers that turn a remote server's
reply, or a local failure, into an Edgeward :class:`~edgeward.types.Reply`.

Security: a remote reply is untrusted text. :func:`reply_from_remote` drops control characters
and bounds its length, so it can be written to the queue record, the tracking log and a DSN
without smuggling a line break into any of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from edgeward.types import Reply

__all__ = [
    "Deferred",
    "Delivered",
    "Failed",
    "RecipientResult",
    "Results",
    "parse_reply_text",
    "reply_from_remote",
    "reply_line",
    "result_for",
]

MAX_REPLY_TEXT = 512
_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)")
_REPLY_LINE = re.compile(r"^([2-5]\d\d)(?:[ -](.*))?$", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class Delivered:
    """The next hop took responsibility for the recipient (2xx after DATA)."""

    reply: Reply
    detail: str = ""  # how it travelled (TLS version, cipher, peer, how the peer was authenticated)


@dataclass(frozen=True, slots=True)
class Deferred:
    """A transient failure (4xx, no connection, no route): retry later."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class Failed:
    """A permanent failure (5xx): the sender gets a DSN."""

    reply: Reply


RecipientResult = Delivered | Deferred | Failed
# Results of one attempt keyed by recipient address, exactly as it is in the queue record.
Results = Mapping[str, RecipientResult]


def clean_text(text: str, limit: int = MAX_REPLY_TEXT) -> str:
    """``text`` on one line: control characters become a space, length is bounded."""
    flat = _CONTROL.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def reply_from_remote(code: int, message: str) -> Reply:
    """A :class:`Reply` from a remote code and message as aiosmtplib reports them.

    The enhanced code (RFC 3463) is taken from the start of the text when its class matches the
    basic code; a mismatched one is left in the text rather than trusted.
    """
    if not 200 <= code <= 599:
        code = 451 if code < 200 else 554
    text = clean_text(message)
    enhanced: str | None = None
    m = _ENHANCED.match(text)
    if m and m.group(1)[0] == str(code)[0]:
        enhanced = m.group(1)
        text = text[m.end() :].strip()
    return Reply(code, enhanced, text)


def reply_line(reply: Reply) -> str:
    """One line for queue records and logs: ``550 5.1.1 text``."""
    parts = [str(reply.code)]
    if reply.enhanced:
        parts.append(reply.enhanced)
    if reply.text:
        parts.append(clean_text(reply.text.replace("\n", " ")))
    return " ".join(parts)


def parse_reply_text(text: str) -> Reply:
    """The reverse of :func:`reply_line`; text without a code reads as a local 451 4.0.0."""
    text = clean_text(text)
    m = _REPLY_LINE.match(text)
    if not m:
        return Reply(451, "4.0.0", text)
    return reply_from_remote(int(m.group(1)), m.group(2) or "")


def result_for(reply: Reply) -> RecipientResult:
    """Classify a final reply for a recipient (RFC 5321 §4.2.1)."""
    if reply.is_positive:
        return Delivered(reply)
    if reply.is_transient:
        return Deferred(reply)
    return Failed(reply)
