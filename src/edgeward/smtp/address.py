"""The envelope address grammar of RFC 5321 §4.1.2 (RFC 6531 for UTF-8), written out by hand.

Owns paths, local parts, domains and address literals; ``parse`` builds the commands on top.
Nothing is delegated to ``email.utils``, whose parsers are built for header fields and are far
too lenient for an envelope. The decisions are listed in ``smtp.parse``.

Security: the routing domain is whatever follows the one ``@`` outside quotes, after any source
route, and nothing else; UTF-8 characters whose compatibility form holds a routing character
are refused, so later normalisation cannot move it.
"""

from __future__ import annotations

import ipaddress
import string
import unicodedata
from dataclasses import dataclass

from edgeward.errors import ProtocolError
from edgeward.smtp import replies as r
from edgeward.types import Address, Reply

MAX_LOCAL = 64  # RFC 5321 §4.5.3.1.1
MAX_DOMAIN = 255  # §4.5.3.1.2
MAX_PATH = 256  # §4.5.3.1.3, including the angle brackets
ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_LDH = frozenset(string.ascii_letters + string.digits + "-")
_HEX6 = frozenset(string.hexdigits + ":.")
# IDNA treats these as label separators; refuse them so a domain cannot change shape later.
_IDNA_DOTS = frozenset("\u3002\uff0e\uff61")


def protocol_error(reply: Reply) -> ProtocolError:
    return ProtocolError(reply)


@dataclass(frozen=True, slots=True)
class Path:
    address: Address
    source_route: bool = False


def printable(c: str, utf8: bool) -> bool:
    return (" " < c < "\x7f") or (utf8 and c > "\x7f" and c.isprintable())


# ASCII characters that route mail or delimit a path. A UTF-8 character whose compatibility form
# (NFKC) holds one is refused, so that no later normalisation can turn ``a＠evil`` into ``a@evil``.
_LOCAL_UNSAFE = frozenset('@"%!:,;<>\\[]() \t')


def _utf8_local_char(c: str) -> bool:
    if not c.isprintable() or c in _IDNA_DOTS:
        return False
    return not any(ch in _LOCAL_UNSAFE for ch in unicodedata.normalize("NFKC", c))


def _utf8_domain_char(c: str) -> bool:
    if c in _IDNA_DOTS or unicodedata.category(c)[0] not in "LMN":
        return False
    return all(
        ch in _LDH or (ch > "\x7f" and ch not in _IDNA_DOTS) for ch in unicodedata.normalize("NFKC", c)
    )


# --- addresses ---------------------------------------------------------------------------------


def _dot_string(text: str, utf8: bool) -> bool:
    if not text or text[0] == "." or text[-1] == "." or ".." in text:
        return False
    return all(c in ATEXT or c == "." or (utf8 and c > "\x7f" and _utf8_local_char(c)) for c in text)


def _quote_local(content: str) -> str:
    escaped = content.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _local_part(text: str, utf8: bool, bad: Reply) -> tuple[str, int]:
    """The canonical local part at the start of ``text`` and the index just after it."""
    if text.startswith('"'):
        out: list[str] = []
        i = 1
        while i < len(text):
            c = text[i]
            if c == "\\":
                # quoted-pairSMTP is backslash followed by %d32-126
                if i + 1 >= len(text) or not " " <= text[i + 1] < "\x7f":
                    raise protocol_error(bad)
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                content = "".join(out)
                local = content if _dot_string(content, utf8) else _quote_local(content)
                return local, i + 1
            # qtextSMTP is %d32-33 / %d35-91 / %d93-126 (plus UTF-8 under SMTPUTF8)
            if not (" " <= c < "\x7f" or (utf8 and c > "\x7f" and _utf8_local_char(c))):
                raise protocol_error(bad)
            out.append(c)
            i += 1
        raise protocol_error(bad)
    end = text.find("@")
    local = text if end < 0 else text[:end]
    if not _dot_string(local, utf8):
        raise protocol_error(bad)
    return local, len(local)


def _ipv4(text: str) -> str | None:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() and 1 <= len(p) <= 3 for p in parts):
        return None
    values = [int(p) for p in parts]
    if any(v > 255 for v in values):
        return None
    return ".".join(str(v) for v in values)


def parse_domain(text: str, utf8: bool, bad: Reply) -> str:
    """A canonical, lower-case domain or address literal, or ``ProtocolError(bad)``."""
    if len(text.encode()) > MAX_DOMAIN:
        raise protocol_error(bad)
    if text.startswith("["):
        if not text.endswith("]"):
            raise protocol_error(bad)
        inner = text[1:-1]
        if (v4 := _ipv4(inner)) is not None:
            return f"[{v4}]"
        if inner[:5].lower() == "ipv6:" and inner[5:] and set(inner[5:]) <= _HEX6:
            try:
                return f"[ipv6:{ipaddress.IPv6Address(inner[5:]).compressed}]"
            except ValueError:
                raise protocol_error(bad) from None
        raise protocol_error(bad)
    labels = text.split(".")
    for label in labels:
        if not 1 <= len(label.encode()) <= 63 or label[0] == "-" or label[-1] == "-":
            raise protocol_error(bad)
        for c in label:
            if c in _LDH:
                continue
            if utf8 and c > "\x7f" and _utf8_domain_char(c):
                continue
            raise protocol_error(bad)
    if labels[-1].isascii() and labels[-1].isdigit():
        raise protocol_error(bad)
    return text.lower()


def _source_route(text: str, utf8: bool, bad: Reply) -> int:
    """Check ``@d1,@d2:`` at the start of ``text``; return the index of the mailbox after it."""
    i = 0
    while True:
        if i >= len(text) or text[i] != "@":
            raise protocol_error(bad)
        i += 1
        if text.startswith("[", i):
            end = text.find("]", i)
            end = -1 if end < 0 else end + 1
        else:
            ends = [e for e in (text.find(",", i), text.find(":", i)) if e >= 0]
            end = min(ends) if ends else -1
        if end < 0 or end >= len(text):
            raise protocol_error(bad)
        parse_domain(text[i:end], utf8, bad)
        if text[end] == ":":
            return end + 1
        if text[end] != ",":
            raise protocol_error(bad)
        i = end + 1


def parse_path(inner: str, *, utf8: bool, sender: bool) -> Path:
    """The address of a path given without its angle brackets (``""`` is the null path)."""
    bad = r.BAD_SENDER_SYNTAX if sender else r.BAD_RECIPIENT_SYNTAX
    if not utf8 and not inner.isascii():
        raise protocol_error(r.NON_ASCII_ADDRESS)
    if len(inner.encode()) + 2 > MAX_PATH:
        raise protocol_error(r.SENDER_PATH_TOO_LONG if sender else r.RECIPIENT_PATH_TOO_LONG)
    if not inner:
        if sender:
            return Path(Address.null())
        raise protocol_error(bad)
    start = _source_route(inner, utf8, bad) if inner.startswith("@") else 0
    mailbox = inner[start:]
    local, end = _local_part(mailbox, utf8, bad)
    if len(local.encode()) > MAX_LOCAL:
        raise protocol_error(bad)
    if end == len(mailbox):
        # RFC 5321 §4.1.1.3: "<Postmaster>" is a valid forward-path, without a domain.
        if not sender and not start and local.lower() == "postmaster":
            return Path(Address(local, ""))
        raise protocol_error(bad)
    if mailbox[end] != "@":
        raise protocol_error(bad)
    domain = parse_domain(mailbox[end + 1 :], utf8, bad)
    return Path(Address(local, domain), source_route=start > 0)
