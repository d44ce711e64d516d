"""Header edits of the transport rules, made on the raw header block.

Prepend to the subject, set a header field, remove header fields. None of them re-emits a value
that came from the mail: the existing bytes stay as they were and only what the configuration
gives is added (validated at load: printable, no CR or LF; non-ASCII as RFC 2047 encoded
words). That is the defence against CVE-2024-6923, where Python 3.11's email generator, refolding
a long header whose encoded word decodes to CR LF, writes that CR LF out and so lets the sender
add header fields (``Bcc:``) or end the header block; the stdlib parser and generator are never
run over a message here.

A subject prefix goes right after ``Subject:``; when that would make the first line longer than
RFC 5322's 998 octets, the original value is moved to a continuation line instead (``Subject:
[EXT]`` CRLF SP ``<original>``), which unfolds to the same text and still leaves its bytes alone.
"""

from __future__ import annotations

import base64

from edgeward.headers import header_end, remove_fields
from edgeward.scanning.decode import decode_words

__all__ = ["add_cc", "add_header", "encode_value", "prepend_subject", "remove_headers", "set_header"]

MAX_LINE = 998


def encode_value(text: str) -> str:
    """``text`` as it may stand in a header: as is when ASCII, else UTF-8 encoded words."""
    if text.isascii():
        return text
    words, chunk = [], ""
    for ch in text:
        # 45 octets of UTF-8 make 60 of base64: every word stays under 76 characters (RFC 2047 §2).
        if len((chunk + ch).encode("utf-8")) > 45:
            words.append(chunk)
            chunk = ""
        chunk += ch
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w.encode('utf-8')).decode('ascii')}?=" for w in words)


def _names(name: str) -> tuple[bytes, ...]:
    low = name.lower().encode("ascii")
    return (low + b":", low + b" ", low + b"\t")


def remove_headers(data: bytes, names: tuple[str, ...]) -> bytes:
    """``data`` without the header fields named (exactly, case-insensitively), folding included."""
    prefixes = tuple(p for n in names for p in _names(n))
    return remove_fields(data, prefixes) if prefixes else data


def _insert_field(data: bytes, field: bytes) -> bytes:
    """``field`` (with its CRLF) at the end of the header block, before the empty line."""
    end = header_end(data)
    if end >= 2 and data[end - 4 : end] == b"\r\n\r\n":
        return data[: end - 2] + field + data[end - 2 :]
    if end == 2 and data.startswith(b"\r\n"):  # no header at all
        return field + data
    # A header block without its empty line (a message of headers only): end it properly.
    return data[:end] + (b"" if data[:end].endswith(b"\r\n") or not end else b"\r\n") + field + b"\r\n"


def add_header(data: bytes, name: str, value: str) -> bytes:
    """``name: value`` added at the end of the header block, beside any field of that name."""
    return _insert_field(data, f"{name}: {encode_value(value)}\r\n".encode("ascii"))


def set_header(data: bytes, name: str, value: str) -> bytes:
    """``name: value`` in place of every field of that name."""
    data = remove_headers(data, (name,))
    return _insert_field(data, f"{name}: {encode_value(value)}\r\n".encode("ascii"))


def _first_field(head: bytes, name: bytes) -> tuple[int, int] | None:
    """Offset of the first ``name:`` field's value and of the end of its first line."""
    pos = 0
    while pos < len(head):
        eol = head.find(b"\r\n", pos)
        eol = len(head) if eol < 0 else eol
        line = head[pos:eol]
        colon = line.find(b":")
        if colon > 0 and line[:colon].rstrip(b" \t").lower() == name:
            return pos + colon + 1, eol
        pos = eol + 2
    return None


def prepend_subject(data: bytes, prefix: str) -> bytes:
    """``data`` whose Subject starts with ``prefix`` (unless it already does)."""
    prefix = prefix.rstrip()
    end = header_end(data)
    head = data[:end]
    found = _first_field(head, b"subject")
    if found is None:
        return _insert_field(data, f"Subject: {encode_value(prefix)}\r\n".encode("ascii"))
    value_at, eol = found
    current = head[value_at:].split(b"\r\n", 1)[0].decode("utf-8", "surrogateescape")
    if decode_words(current.strip()).startswith(prefix):
        return data
    encoded = encode_value(prefix if prefix.isascii() or not current.lstrip().startswith("=?")
                           else prefix + " ")  # fmt: skip
    value = data[value_at:eol].lstrip(b" \t")
    start = value_at + (eol - value_at - len(value))
    if not value:  # the value starts on a continuation line: the prefix takes the empty first line
        return data[:value_at] + b" " + encoded.encode("ascii") + data[eol:]
    if len(b"Subject: " + encoded.encode() + b" " + data[start:eol]) <= MAX_LINE and "\r\n" not in encoded:
        return data[:value_at] + b" " + encoded.encode("ascii") + b" " + data[start:]
    # Too long for one line (or an encoded prefix of several words): the original moves to a
    # continuation line of its own, unchanged.
    return data[:value_at] + b" " + encoded.encode("ascii") + b"\r\n " + data[start:]


def add_cc(data: bytes, addresses: tuple[str, ...]) -> bytes:
    """``addresses`` named in the Cc field: appended to the first one (its bytes untouched, each
    new address on a continuation line), or a new Cc field. Addresses already in it are skipped.

    ``addresses`` are plain addr-specs checked at configuration load."""
    end = header_end(data)
    head = data[:end]
    found = _first_field(head, b"cc")
    if found is None:
        return _insert_field(data, b"Cc: " + b",\r\n ".join(a.encode("ascii") for a in addresses) + b"\r\n")
    value_at, eol = found
    # The field goes on over its continuation lines (those starting with a space or a tab).
    while head[eol + 2 : eol + 3] in (b" ", b"\t") and eol + 2 < len(head):
        nxt = head.find(b"\r\n", eol + 2)
        eol = len(head) if nxt < 0 else nxt
    present = head[value_at:eol].decode("utf-8", "replace").lower()
    new = [a for a in addresses if a.lower() not in present]
    if not new:
        return data
    # An empty Cc (just "Cc:") takes the first address without a comma before it.
    joined = b",\r\n ".join(a.encode("ascii") for a in new)
    glue = b",\r\n " if head[value_at:eol].strip() else b" "
    return data[:eol] + glue + joined + data[eol:]
