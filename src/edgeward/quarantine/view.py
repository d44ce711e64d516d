"""A quarantined message as an administrator may look at it: headers, text, attachment list.

Nothing here renders or runs anything from the message. Every string handed out is escaped:
control characters (CR, LF in a header, ESC, NUL, bidirectional overrides) become ``\\xNN``
(``\\u....`` above Latin-1), so a terminal, a log or a web page showing them sees text only.
HTML parts are shown as their source text, never as HTML; a front that puts them into a page
must still escape them for HTML (``html.escape``) as it would any text.

The structure comes from the scanner's bounded walk (``scanning.walk``), which never raises
and stops at the depth, part and size bounds, so a broken or hostile MIME structure shows what
could be read and a note that the rest was cut.
"""

from __future__ import annotations

import email.errors
import email.header
import re
from dataclasses import dataclass

from edgeward.headers import parse_headers
from edgeward.scanning.truetype import refine
from edgeward.scanning.walk import WalkLimits, walk_message

__all__ = ["AttachmentInfo", "MessageView", "TextPart", "escape", "header_text", "view_message"]

# Not \t and \n: kept in text bodies (header values are escaped with them, see header_text).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_TEXT_LIMIT = 256 * 1024
_LIMITS = WalkLimits(max_depth=20, max_parts=200, max_decoded_bytes=16 * 1024 * 1024)


def escape(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` with every character that could act on a reader escaped."""
    if keep_newlines:
        text = text.replace("\r\n", "\n")
    else:
        text = text.replace("\r", "\\x0d").replace("\n", "\\x0a").replace("\t", "\\x09")

    def sub(m: re.Match[str]) -> str:
        code = ord(m.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _UNSAFE.sub(sub, text)


def header_text(value: str) -> str:
    """A header value decoded from RFC 2047 where it can be, then escaped to one line."""
    try:
        decoded = str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        decoded = value
    return escape(decoded, keep_newlines=False)


@dataclass(frozen=True, slots=True)
class TextPart:
    path: str
    content_type: str
    text: str  # escaped
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    path: str
    name: str  # escaped
    declared_type: str
    true_type: str
    size: int


@dataclass(frozen=True, slots=True)
class MessageView:
    headers: tuple[tuple[str, str], ...]  # both escaped
    texts: tuple[TextPart, ...]
    attachments: tuple[AttachmentInfo, ...]
    notes: tuple[str, ...]  # what the walk found wrong with the structure


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def view_message(data: bytes) -> MessageView:
    head = parse_headers(data)
    headers = tuple((escape(n, keep_newlines=False), header_text(v)) for n, v in head.fields[:500])
    walk = walk_message(data, _LIMITS)
    texts: list[TextPart] = []
    attachments: list[AttachmentInfo] = []
    for entry in walk.entries:
        item = entry.item
        declared = (item.declared_type or "text/plain").lower()
        if entry.member or item.path == "":
            continue  # archive members are listed by their archive; the whole message is not a part
        if declared in ("text/plain", "text/html") and not item.name:
            body = _decode(item.data[:_TEXT_LIMIT])
            texts.append(TextPart(item.path, declared, escape(body), len(item.data) > _TEXT_LIMIT))
        elif not declared.startswith("multipart/"):
            attachments.append(AttachmentInfo(
                item.path, escape(item.name, keep_newlines=False), escape(declared, keep_newlines=False),
                refine(item), len(item.data),
            ))  # fmt: skip
    notes = [f"{name}: {escape(detail, keep_newlines=False)}" for name, detail in walk.findings[:50]]
    if walk.cut:
        notes.append("the structure exceeds the display bounds: not every part is shown")
    return MessageView(headers, tuple(texts), tuple(attachments), tuple(notes))
