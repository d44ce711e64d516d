"""A bounded, tolerant reader of an RFC 5322 header block.

The stdlib ``email`` parser has changed its handling of malformed headers across releases; for
decisions that matter (hop counts, loop detection, stripping internal headers) the gateway
reads raw header lines itself, here, in one pass with fixed bounds.

Security: the reader never decodes or interprets values (no RFC 2047 decoding), so a crafted
encoded word cannot smuggle a line break into a header the gateway writes. Values are kept
as raw bytes decoded with ``surrogateescape`` and must be sanitised before being copied out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FIELD_NAME = re.compile(rb"^[\x21-\x39\x3b-\x7e]+$")  # RFC 5322 §3.6.8 ftext
# BODY=BINARYMIME messages reach us as sent, so a header block may hold bare LF or bare CR.
# Many next hops end a line at either; reading only CRLF as a line end would let
# "Subject: x\nX-Edgeward-SCL: -1" pass as one Subject field and survive remove_fields.
_LINE_END = re.compile(rb"\r\n|\r|\n")
_LINE_END_KEPT = re.compile(rb"(\r\n|\r|\n)")


@dataclass(frozen=True, slots=True)
class HeaderBlock:
    """The header fields of a message, in order, plus where the body starts."""

    fields: tuple[tuple[str, str], ...]
    body_offset: int  # index of the first body byte in the message; len(data) when there is no body
    malformed: int = 0  # lines that were neither a field nor a continuation

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self.fields if n.lower() == key]

    def get(self, name: str, default: str = "") -> str:
        values = self.get_all(name)
        return values[0] if values else default

    def count(self, name: str) -> int:
        key = name.lower()
        return sum(1 for n, _ in self.fields if n.lower() == key)


def header_end(data: bytes) -> int:
    """Offset of the first body byte: just after the first empty line (CRLF CRLF)."""
    if data.startswith(b"\r\n"):
        return 2
    end = data.find(b"\r\n\r\n")
    return len(data) if end < 0 else end + 4


def parse_headers(data: bytes, max_fields: int = 10000) -> HeaderBlock:
    """Split the header block of ``data`` into unfolded fields.

    The block ends at the first CRLF CRLF; inside it a bare LF or CR also ends a line.
    """
    end = header_end(data)
    fields: list[tuple[str, str]] = []
    malformed = 0
    name: bytes | None = None
    value: list[bytes] = []
    for line in _LINE_END.split(data[:end]):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if name is not None:
                value.append(line)
            else:
                malformed += 1
            continue
        if name is not None:
            fields.append(_field(name, value))
            if len(fields) >= max_fields:
                name = None
                break
        colon = line.find(b":")
        candidate = line[:colon].rstrip(b" \t") if colon > 0 else b""
        if candidate and _FIELD_NAME.match(candidate):
            name, value = candidate, [line[colon + 1 :]]
        else:
            name, value = None, []
            malformed += 1
    if name is not None:
        fields.append(_field(name, value))
    return HeaderBlock(tuple(fields), end, malformed)


def _field(name: bytes, parts: list[bytes]) -> tuple[str, str]:
    raw = b" ".join(p.strip(b" \t") for p in parts)
    return name.decode("ascii"), raw.decode("utf-8", "surrogateescape")


def sanitize(text: str, limit: int = 200) -> str:
    """Make ``text`` safe to place inside a header or a log line we write."""
    if text.isprintable():  # the common case, in one C loop (CR and LF are not printable)
        return text[:limit]
    cleaned = "".join(ch if ch.isprintable() and ch not in "\r\n" else "?" for ch in text)
    return cleaned[:limit]


def remove_fields(data: bytes, prefixes: tuple[bytes, ...]) -> bytes:
    """Drop every header field (with its continuation lines) whose name starts with a prefix.

    ``prefixes`` are lower-case. The body is left byte for byte as it was.
    """
    end = header_end(data)
    head = data[:end]
    if not any(p in head.lower() for p in prefixes):
        return data  # the common case: no copy of the body is made
    # Lines are cut at any line end (see _LINE_END) and kept with the end they had. A dropped
    # line hands its end to the line before, so the block still ends with the ends it had.
    parts = _LINE_END_KEPT.split(head)
    out: list[list[bytes]] = []
    dropping = False
    for line, sep in zip(parts[0::2], [*parts[1::2], b""], strict=True):
        if not (line[:1] in (b" ", b"\t") and line):
            dropping = line.lower().startswith(prefixes) and b":" in line
        if not dropping:
            out.append([line, sep])
        elif out:
            out[-1][1] = sep
    # The body goes into the join as a view: one copy of it (the result), not two.
    with memoryview(data) as view:
        return b"".join([*(line + sep for line, sep in out), view[end:]])
