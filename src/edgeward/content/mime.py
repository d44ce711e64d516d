"""A small, bounded, never-raising MIME reader for the content classifier.

This module owns turning raw message bytes into a :class:`ParsedMessage`: unfolded headers, the
decoded text of every text part, and a summary of the MIME structure and its anomalies. It is not a
general MIME library (the queue and transforms keep the original bytes); it reads just enough for
classification and is written for hostile input.

Security: every dimension of work is bounded by :class:`ParseLimits` (bytes read, bytes of text
per part, number of parts, nesting depth, header count). Malformed input never raises: broken
base64, unknown charsets, missing boundaries and truncated headers become *anomalies* that the
classifier may use as evidence. Line endings are normalised to LF and an mbox ``From `` envelope
line is dropped before anything else, so neither can influence a score.
"""

from __future__ import annotations

import binascii
import codecs
import re
from dataclasses import dataclass, field
from email.header import decode_header

__all__ = ["ParseLimits", "ParsedMessage", "TextPart", "decode_rfc2047", "parse_message"]


@dataclass(frozen=True)
class ParseLimits:
    """Upper bounds on the work done for one message."""

    max_message_bytes: int = 2_000_000
    max_text_bytes_per_part: int = 200_000
    max_parts: int = 64
    max_depth: int = 8
    max_headers: int = 400


@dataclass(frozen=True)
class TextPart:
    """Decoded text of one leaf part (``text/plain`` or ``text/html``)."""

    content_type: str
    text: str


@dataclass
class ParsedMessage:
    """Headers (name lower-cased, value unfolded, RFC 2047-decoded) plus every part's summary."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    texts: list[TextPart] = field(default_factory=list)
    # One entry per part in document order, e.g. "multipart/alternative", "text/plain".
    structure: list[str] = field(default_factory=list)
    # Lower-cased attachment file name extensions ("exe", "zip", ...).
    attachment_exts: list[str] = field(default_factory=list)
    charsets: list[str] = field(default_factory=list)
    encodings: list[str] = field(default_factory=list)
    anomalies: set[str] = field(default_factory=set)

    def header(self, name: str) -> str:
        """First value of the header ``name`` (case-insensitive), or ``""``."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return ""

    def has_header(self, name: str) -> bool:
        name = name.lower()
        return any(key == name for key, _ in self.headers)


# A header block's lines, each as (name, value, continuation, other): a field, a folded line
# (it begins with white space), any other non-empty line, or all empty for an empty line.
_HEADER_LINE = re.compile(rb"^(?:([!-9;-~]+)[ \t]*:(.*)|([ \t].*)|(.+))?$", re.M)
_PARAM_RE = re.compile(r';\s*([A-Za-z0-9_*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_KNOWN_BAD_CHARSETS = {"unknown-8bit", "x-unknown", "unknown", "default", "x-user-defined"}


def _decode_bytes(data: bytes, charset: str) -> str:
    """Decode with the declared charset, falling back to UTF-8 then cp1252; never raises."""
    charset = charset.strip().strip('"').lower()
    if charset and charset not in _KNOWN_BAD_CHARSETS:
        try:
            codecs.lookup(charset)
            return data.decode(charset, errors="replace")
        except (LookupError, ValueError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # cp1252 maps almost every byte; "replace" covers the five it leaves undefined.
        return data.decode("cp1252", errors="replace")


def decode_rfc2047(value: str) -> str:
    """Decode RFC 2047 encoded-words; a malformed word is left as it was."""
    if "=?" not in value:
        return value
    try:
        pieces = decode_header(value)
    except Exception:  # the stdlib raises several types on malformed words
        return value
    out: list[str] = []
    for chunk, charset in pieces:
        if isinstance(chunk, bytes):
            out.append(_decode_bytes(chunk, charset or "utf-8"))
        else:
            out.append(chunk)
    return "".join(out)


def _parse_headers(block: bytes, limits: ParseLimits, anomalies: set[str]) -> list[tuple[str, str]]:
    raw: list[tuple[str, list[bytes]]] = []
    # One findall classifies every line, instead of a split and a match per line.
    for name, value, folded, other in _HEADER_LINE.findall(block):
        if folded:
            if raw:
                raw[-1][1].append(folded.strip())
            else:
                anomalies.add("HDR_LEADING_CONTINUATION")
        elif name:
            if len(raw) >= limits.max_headers:
                anomalies.add("HDR_TOO_MANY")
                break
            raw.append((name.decode("ascii", "replace").lower(), [value.strip()]))
        elif other:
            anomalies.add("HDR_MALFORMED_LINE")
    headers: list[tuple[str, str]] = []
    for name, parts in raw:
        # Unfold (RFC 5322 section 2.2.3) and decode once per header, not once per line.
        # Same result as _decode_bytes(..., "utf-8") (which never falls back for a known
        # charset), without its per-call charset lookup: headers are the most numerous strings.
        value = (b" ".join(parts) if len(parts) > 1 else parts[0]).decode("utf-8", "replace")
        if "=?" in value and _ENCODED_WORD.search(value):
            value = decode_rfc2047(value)
        headers.append((name, value))
    return headers


def _split_head_body(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\n\n")
    if end < 0:
        return data, b""
    return data[:end], data[end + 2 :]


def _content_type(value: str) -> tuple[str, dict[str, str]]:
    main = value.split(";", 1)[0].strip().lower()
    params: dict[str, str] = {}
    for key, raw in _PARAM_RE.findall(value):
        key = key.lower().rstrip("*")
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = raw[1:-1].replace('\\"', '"')
        params.setdefault(key, raw)
    return main, params


def _decode_transfer(body: bytes, cte: str, anomalies: set[str]) -> bytes:
    if cte == "base64":
        cleaned = _B64_JUNK.sub(b"", body)
        # The junk pattern also takes the "=" padding away; cutting to a multiple of four then
        # lost the last one or two bytes of every padded body. Pad again instead, dropping
        # only a lone final character, which cannot hold a whole byte.
        extra = len(cleaned) % 4
        cleaned = cleaned[:-1] if extra == 1 else cleaned + b"=" * ((4 - extra) % 4)
        try:
            return binascii.a2b_base64(cleaned)
        except binascii.Error:
            anomalies.add("MIME_BAD_BASE64")
            return b""
    if cte == "quoted-printable":
        try:
            return binascii.a2b_qp(body)
        except (binascii.Error, ValueError):
            anomalies.add("MIME_BAD_QP")
            return body
    return body


def _split_multipart(body: bytes, boundary: str, anomalies: set[str]) -> list[bytes]:
    delim = b"--" + boundary.encode("latin-1", "replace")
    parts: list[bytes] = []
    # A delimiter is only valid at the start of a line (RFC 2046 section 5.1.1).
    chunks = (b"\n" + body).split(b"\n" + delim)
    if len(chunks) == 1:
        anomalies.add("MIME_MISSING_BOUNDARY")
        return []
    closed = False
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            closed = True
            break
        newline = chunk.find(b"\n")
        parts.append(chunk[newline + 1 :] if newline >= 0 else b"")
    if not closed:
        anomalies.add("MIME_UNCLOSED_MULTIPART")
    return parts


class _Walker:
    def __init__(self, limits: ParseLimits, message: ParsedMessage) -> None:
        self.limits = limits
        self.msg = message
        self.count = 0

    def walk(self, headers: list[tuple[str, str]], body: bytes, depth: int, default_type: str) -> None:
        msg, limits = self.msg, self.limits
        self.count += 1
        if self.count > limits.max_parts:
            msg.anomalies.add("MIME_TOO_MANY_PARTS")
            return
        if depth > limits.max_depth:
            msg.anomalies.add("MIME_TOO_DEEP")
            return
        ctype_raw = next((v for k, v in headers if k == "content-type"), "")
        ctype, params = _content_type(ctype_raw) if ctype_raw else (default_type, {})
        if "/" not in ctype:
            msg.anomalies.add("MIME_BAD_CONTENT_TYPE")
            ctype = "text/plain"
        msg.structure.append(ctype)
        cte = next((v for k, v in headers if k == "content-transfer-encoding"), "7bit").strip().lower()
        disposition = next((v for k, v in headers if k == "content-disposition"), "")
        filename = params.get("name", "") or _content_type("x;" + disposition)[1].get("filename", "")
        if ctype.startswith("multipart/"):
            boundary = params.get("boundary", "")
            if not boundary:
                msg.anomalies.add("MIME_NO_BOUNDARY")
                return
            child_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
            for part in _split_multipart(body, boundary, msg.anomalies):
                head, child_body = _split_head_body(part)
                if part.startswith(b"\n"):
                    head, child_body = b"", part[1:]
                child_headers = _parse_headers(head, limits, msg.anomalies)
                self.walk(child_headers, child_body, depth + 1, child_default)
            return
        if ctype == "message/rfc822":
            head, inner = _split_head_body(_decode_transfer(body, cte, msg.anomalies))
            self.walk(_parse_headers(head, limits, msg.anomalies), inner, depth + 1, "text/plain")
            return
        if filename:
            ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
            msg.attachment_exts.append(ext[:10])
        if cte not in ("7bit", "8bit", "binary", ""):
            msg.encodings.append(cte)
        if not ctype.startswith("text/") or "attachment" in disposition.lower():
            return
        if ctype not in ("text/plain", "text/html"):
            return
        data = _decode_transfer(body[: limits.max_text_bytes_per_part * 2], cte, msg.anomalies)
        data = data[: limits.max_text_bytes_per_part]
        charset = params.get("charset", "")
        if charset:
            msg.charsets.append(charset.lower()[:40])
        text = _decode_bytes(data, charset)
        if "\ufffd" in text:
            msg.anomalies.add("MIME_UNDECODABLE_TEXT")
        msg.texts.append(TextPart(ctype, text))


def parse_message(raw: bytes, limits: ParseLimits | None = None) -> ParsedMessage:
    """Parse ``raw`` (any line endings, with or without an mbox ``From `` line); never raises."""
    limits = limits or ParseLimits()
    data = raw[: limits.max_message_bytes]
    if len(raw) > limits.max_message_bytes:
        data = data[: data.rfind(b"\n") + 1] or data
    # Line-ending style carries no information about spam; normalise before anything else.
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    data = data.lstrip(b"\n")
    if data.startswith(b"From "):
        data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
    # mbox ">From " quoting inside a single message is an mbox artefact, not content.
    message = ParsedMessage()
    head, body = _split_head_body(data)
    if not body and b":" not in head.split(b"\n", 1)[0]:
        # No header block at all: treat everything as a plain-text body.
        head, body = b"", data
        message.anomalies.add("HDR_NONE")
    message.headers = _parse_headers(head, limits, message.anomalies)
    _Walker(limits, message).walk(message.headers, body, 0, "text/plain")
    return message
