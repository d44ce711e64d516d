"""The ``Received-SPF`` trace header field (RFC 7208 §9.1) for one :class:`SpfResult`.

Owns the text of the field: the result, a comment for people and the key-value pairs for
programs (``client-ip``, ``envelope-from``, ``helo``, ``receiver``, ``identity``,
``mechanism``, ``problem``).

Security: the envelope, the HELO name and the problem text come from the client or from the
sender's DNS, so every value is cleaned before it is written: control characters (CR and LF
above all, which would start a new header field) and non-ASCII are replaced, values are
length-bounded, and a value that is not a dot-atom is written as a quoted-string with ``\\`` and
``"`` escaped (RFC 5322 §3.2.4); the comment escapes ``(``, ``)`` and ``\\`` (§3.2.2). The
field is folded between items, as ``Received`` is, so lines stay near 78 characters.
"""

from __future__ import annotations

import re

from edgeward.senderauth.spf import SpfResult, SpfStatus

__all__ = ["FIELD_NAME", "received_spf", "received_spf_value"]

FIELD_NAME = "Received-SPF"
MAX_VALUE = 256  # longest value written; envelope addresses are at most 254 (RFC 5321 §4.5.3.1)

_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_UNSAFE = re.compile(r"[^\x20-\x7e]")
_RESULT_WORDS = {  # RFC 7208 §9.1: the result keyword, case-insensitive; written as the RFC does
    SpfStatus.PASS: "pass",
    SpfStatus.FAIL: "fail",
    SpfStatus.SOFTFAIL: "softfail",
    SpfStatus.NEUTRAL: "neutral",
    SpfStatus.NONE: "none",
    SpfStatus.TEMPERROR: "temperror",
    SpfStatus.PERMERROR: "permerror",
}


def _clean(text: str, limit: int = MAX_VALUE) -> str:
    cleaned = _UNSAFE.sub("?", text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def _value(text: str) -> str:
    cleaned = _clean(text)
    if _DOT_ATOM.match(cleaned):
        return cleaned
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    cleaned = _clean(text, 2 * MAX_VALUE)
    return "(" + re.sub(r"([()\\])", r"\\\1", cleaned) + ")"


def received_spf_value(result: SpfResult, *, receiver: str) -> str:
    """The field body, folded, without the field name or the final CRLF."""
    comment = f"{receiver}: {result.description()}"
    if result.explanation:
        comment += f"; {result.explanation}"
    pairs = [("client-ip", result.ip)]
    if result.sender:
        pairs.append(("envelope-from", result.sender))
    pairs.append(("helo", result.helo))
    pairs.append(("receiver", receiver))
    pairs.append(("identity", result.identity.value))
    if result.mechanism:
        pairs.append(("mechanism", result.mechanism))
    if result.problem:
        pairs.append(("problem", result.problem))
    words = [_RESULT_WORDS[result.status], _comment(comment)]
    words += [f"{key}={_value(value)};" for key, value in pairs]
    words[-1] = words[-1].removesuffix(";")
    return _fold(words, len(FIELD_NAME) + 2)


def received_spf(result: SpfResult, *, receiver: str) -> str:
    """The whole field with its CRLF, ready to be prepended to the message (RFC 7208 §9.1: above
    the ``Received`` field it accompanies)."""
    return f"{FIELD_NAME}: {received_spf_value(result, receiver=receiver)}\r\n"


def _fold(words: list[str], first_line: int) -> str:
    """Join with spaces, breaking before a word that would pass 78 columns (RFC 5322 §2.2.3)."""
    lines: list[str] = []
    current = ""
    width = first_line
    for word in words:
        if current and width + len(current) + 1 + len(word) > 78:
            lines.append(current)
            current, width = word, 8  # continuation lines start with a tab
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return "\r\n\t".join(lines)
