"""Parsing of SMTP command arguments: MAIL and RCPT with their ESMTP parameters, and the rest.

The address grammar itself (paths, local parts, domains, literals) is in ``smtp.address``.

Everything here is a pure function from ``str`` to a value or a ``ProtocolError`` that carries
the reply to send. The grammar is RFC 5321 §4.1.2 (with RFC 6531 for UTF-8), written out by
hand; nothing is delegated to ``email.utils``, whose parsers are built for header fields and
are far too lenient for an envelope.

Decisions (where servers differ):

* ``MAIL FROM:`` and ``RCPT TO:`` need the angle brackets (Postfix ``strict_rfc821_envelopes``);
  a bare ``MAIL FROM:a@b`` is ``501 5.5.4``. Spaces after the colon are tolerated.
* A source route ``<@a,@b:user@d>`` is syntax-checked and dropped (RFC 5321 §4.1.1.3 and
  appendix C); the event says that one was present (``source_route``).
* The local part is kept in canonical wire form: ``"john"`` becomes ``john`` (RFC 5321 §4.1.2:
  quoting is only needed when the content is not a dot-string), anything else stays quoted with
  only ``"`` and ``\\`` escaped. So ``str(address)`` is never ambiguous: the unquoted content of
  ``"a@b"@c`` can never pass for a second ``@``.
* Dot-strings are strict: no leading, trailing or doubled dot.
* The domain is lower-cased. Address literals are canonical: ``[010.1.1.1]`` is
  ``[10.1.1.1]`` (decimal, RFC 5321 §4.1.3), IPv6 literals are compressed and lower-case
  (``[ipv6:2001:db8::1]``). General address literals are refused, and so is a domain whose last
  label is all digits (``user@127.0.0.1`` without brackets: no TLD is numeric).
* ``<Postmaster>`` without a domain is accepted for RCPT (RFC 5321 §4.1.1.3) and gives
  ``Address("Postmaster", "")``.
* xtext values (ENVID, ORCPT) are decoded; a decoded control character is refused, since these
  values end up in DSN header fields.

Security: the routing domain is whatever follows the one ``@`` outside quotes, after any source
route, and nothing else. Percent hacks, bang paths, double ``@`` and quoted ``@`` cannot move
it: ``<a%evil@[127.0.0.1]>`` has domain ``[127.0.0.1]``, ``<a@evil@host>`` and
``<"a@evil">`` are refused. Every input is bounded by the line limit, so every loop is too.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from edgeward.smtp import replies as r
from edgeward.smtp.address import ATEXT, Path, parse_path, printable, protocol_error
from edgeward.smtp.events import BodyType, Params
from edgeward.types import Reply

__all__ = [
    "ParamPolicy",
    "Path",
    "parse_auth",
    "parse_bdat",
    "parse_helo",
    "parse_mail",
    "parse_path",
    "parse_rcpt",
    "split_command",
    "xtext_decode",
    "xtext_encode",
]

MAX_ENVID = 100  # RFC 3461 §4.4
MAX_ORCPT = 500  # RFC 3461 §4.2
MAX_SIZE_DIGITS = 15
_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "-")
_B64 = frozenset(string.ascii_letters + string.digits + "+/=")


@dataclass(frozen=True, slots=True)
class ParamPolicy:
    """Which optional parameters the advertised extensions allow (others give 555 5.5.4)."""

    smtputf8: bool = True
    dsn: bool = True
    binarymime: bool = True
    auth: bool = False
    requiretls: bool = False
    max_size: int = 10 * 1024 * 1024


def split_command(line: str) -> tuple[str, str]:
    """``("MAIL", "FROM:<a@b>")`` from ``"mail FROM:<a@b>"``: verb upper-cased, argument as is."""
    verb, _, arg = line.partition(" ")
    return verb.upper(), arg.rstrip(" ")


# --- parameters --------------------------------------------------------------------------------


def xtext_decode(value: str) -> str:
    """Decode RFC 3461 §4 xtext; refuse bad escapes and decoded control characters."""
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "+":
            hexpair = value[i + 1 : i + 3]
            if len(hexpair) != 2 or not all(h in string.hexdigits for h in hexpair):
                raise protocol_error(r.PARAMETER_SYNTAX)
            c = chr(int(hexpair, 16))
            if not " " <= c < "\x7f":
                raise protocol_error(r.PARAMETER_SYNTAX)
            i += 3
        else:
            if c == "=" or not (" " < c < "\x7f" or (c > "\x7f" and c.isprintable())):
                raise protocol_error(r.PARAMETER_SYNTAX)
            i += 1
        out.append(c)
    return "".join(out)


def xtext_encode(value: str) -> str:
    """Encode for RFC 3461 xtext: ``+XX`` for ``+``, ``=`` and everything outside ``!``..``~``."""
    return "".join(
        c if "!" <= c <= "~" and c not in "+=" else "".join(f"+{b:02X}" for b in c.encode()) for c in value
    )


def _params(text: str, utf8: bool) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for token in text.split(" "):
        if not token:
            continue
        key, eq, value = token.partition("=")
        if not key or not set(key) <= _KEY_CHARS or key[0] == "-" or (eq and not value):
            raise protocol_error(r.PARAMETER_SYNTAX)
        if eq and not all(c != "=" and printable(c, utf8) for c in value):
            raise protocol_error(r.PARAMETER_SYNTAX)
        key = key.upper()
        if key in seen:
            raise protocol_error(r.PARAMETER_SYNTAX)
        seen.add(key)
        out.append((key, value if eq else None))
    return out


def _split_path(arg: str, keyword: str, syntax: Reply) -> tuple[str, str]:
    """Split ``FROM:<path> params`` into the path's inside and the parameter text."""
    if arg[: len(keyword)].upper() != keyword:
        raise protocol_error(syntax)
    rest = arg[len(keyword) :].lstrip(" ")
    if not rest.startswith("<"):
        raise protocol_error(syntax)
    in_quote = False
    i = 1
    while i < len(rest):
        c = rest[i]
        if in_quote and c == "\\":
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
        elif c == ">" and not in_quote:
            break
        i += 1
    else:
        raise protocol_error(syntax)
    params = rest[i + 1 :]
    if params and not params.startswith(" "):
        raise protocol_error(syntax)
    return rest[1:i], params


def _need(value: str | None) -> str:
    if value is None:
        raise protocol_error(r.PARAMETER_SYNTAX)
    return value


def parse_mail(arg: str, policy: ParamPolicy) -> tuple[Path, Params, int | None, BodyType | None, bool]:
    """``MAIL FROM:<path> params`` → path, params, SIZE, BODY, SMTPUTF8."""
    inner, param_text = _split_path(arg, "FROM:", r.MAIL_SYNTAX)
    raw = _params(param_text, utf8=True)
    smtputf8 = any(k == "SMTPUTF8" for k, _ in raw)
    if not smtputf8 and not param_text.isascii():
        raise protocol_error(r.PARAMETER_SYNTAX)
    size: int | None = None
    body: BodyType | None = None
    params: list[tuple[str, str | None]] = []
    for key, value in raw:
        if key == "SIZE":
            digits = _need(value)
            if not (digits.isascii() and digits.isdigit() and len(digits) <= MAX_SIZE_DIGITS):
                raise protocol_error(r.PARAMETER_SYNTAX)
            size = int(digits)
            if size > policy.max_size:
                raise protocol_error(r.MESSAGE_TOO_BIG)
        elif key == "BODY":
            kind = _need(value).upper()
            if kind == "7BIT":
                body = "7BIT"
            elif kind == "8BITMIME":
                body = "8BITMIME"
            elif kind == "BINARYMIME" and policy.binarymime:
                body = "BINARYMIME"
            else:
                raise protocol_error(r.UNKNOWN_PARAMETER if kind == "BINARYMIME" else r.PARAMETER_SYNTAX)
            value = body
        elif key == "SMTPUTF8" and policy.smtputf8:
            if value is not None:
                raise protocol_error(r.PARAMETER_SYNTAX)
        elif key == "RET" and policy.dsn:
            value = _need(value).upper()
            if value not in ("FULL", "HDRS"):
                raise protocol_error(r.PARAMETER_SYNTAX)
        elif key == "ENVID" and policy.dsn:
            value = xtext_decode(_need(value))
            if len(value) > MAX_ENVID:
                raise protocol_error(r.PARAMETER_SYNTAX)
        elif key == "AUTH" and policy.auth:
            _need(value)
        elif key == "REQUIRETLS" and policy.requiretls:
            if value is not None:  # RFC 8689 §4.1: a keyword without a value
                raise protocol_error(r.PARAMETER_SYNTAX)
        else:
            raise protocol_error(r.UNKNOWN_PARAMETER)
        params.append((key, value))
    path = parse_path(inner, utf8=smtputf8, sender=True)
    return path, tuple(params), size, body, smtputf8


_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})


def parse_rcpt(arg: str, policy: ParamPolicy, *, smtputf8: bool) -> tuple[Path, Params]:
    """``RCPT TO:<path> params``; UTF-8 is allowed only if the MAIL carried SMTPUTF8."""
    inner, param_text = _split_path(arg, "TO:", r.RCPT_SYNTAX)
    if not smtputf8 and not param_text.isascii():
        raise protocol_error(r.PARAMETER_SYNTAX)
    params: list[tuple[str, str | None]] = []
    for key, value in _params(param_text, smtputf8):
        if key == "NOTIFY" and policy.dsn:
            items = _need(value).upper().split(",")
            if items != ["NEVER"] and not (set(items) <= _NOTIFY and len(set(items)) == len(items)):
                raise protocol_error(r.PARAMETER_SYNTAX)
            value = ",".join(items)
        elif key == "ORCPT" and policy.dsn:
            addr_type, semi, xtext = _need(value).partition(";")
            if not semi or not addr_type or not all(c in ATEXT for c in addr_type) or not xtext:
                raise protocol_error(r.PARAMETER_SYNTAX)
            value = f"{addr_type};{xtext_decode(xtext)}"
            if len(value) > MAX_ORCPT:
                raise protocol_error(r.PARAMETER_SYNTAX)
        else:
            raise protocol_error(r.UNKNOWN_PARAMETER)
        params.append((key, value))
    return parse_path(inner, utf8=smtputf8, sender=False), tuple(params)


# --- other commands ----------------------------------------------------------------------------


def parse_helo(arg: str) -> str:
    """The HELO/EHLO argument: any non-empty printable text (checking it is an agent's job)."""
    name = arg.strip(" ")
    if not name or not all(c == " " or printable(c, True) for c in name):
        raise protocol_error(r.HELO_SYNTAX)
    return name


def parse_bdat(arg: str) -> tuple[int, bool]:
    """``BDAT size [LAST]`` (RFC 3030 §2) → (size, last)."""
    parts = arg.split(" ")
    if not 1 <= len(parts) <= 2 or (len(parts) == 2 and parts[1].upper() != "LAST"):
        raise protocol_error(r.BDAT_SYNTAX)
    digits = parts[0]
    if not (digits.isascii() and digits.isdigit() and len(digits) <= MAX_SIZE_DIGITS):
        raise protocol_error(r.BDAT_SYNTAX)
    return int(digits), len(parts) == 2


def parse_auth(arg: str) -> tuple[str, str | None]:
    """``AUTH mechanism [initial-response]`` (RFC 4954 §4) → (MECHANISM, initial)."""
    parts = arg.split(" ")
    mechanism = parts[0].upper()
    if (
        not 1 <= len(parts) <= 2
        or not 1 <= len(mechanism) <= 20
        or not all(c in _KEY_CHARS or c == "_" for c in mechanism)
    ):
        raise protocol_error(r.AUTH_SYNTAX)
    initial = parts[1] if len(parts) == 2 else None
    if initial is not None and (not initial or not set(initial) <= _B64):
        raise protocol_error(r.AUTH_SYNTAX)
    return mechanism, initial
