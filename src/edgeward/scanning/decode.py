"""Transfer decodings and header parameters, tolerant of what hostile mail sends.

``transfer_decode`` undoes base64, quoted-printable and uuencode (RFC 2045 §6, and the
``x-uuencode`` that predates MIME) and never raises: junk inside base64 is skipped, a broken
quoted-printable soft break is kept as text, and each decoding reports whether it had to repair
something, which the walk turns into ``MIME_DECODE_ERROR``. ``uu_blocks`` finds ``begin 644
name`` blocks pasted into a text body, which mail clients still show as attachments.

``parameters`` reads every parameter of a Content-Type or Content-Disposition field and keeps
every value a parameter is given: a field with two ``boundary=`` or two ``filename=`` values is
the trick of making two parsers see two messages, and the walk acts on all of them. RFC 2231
continuations and charsets (``filename*0*=utf-8''in; filename*1*=voice.exe``) and RFC 2047
encoded words inside quoted names (Outlook writes them, RFC 2047 §5 forbids them) are decoded.
"""

from __future__ import annotations

import binascii
import re
from email.header import decode_header
from urllib.parse import unquote_to_bytes

__all__ = ["decode_words", "parameters", "transfer_decode", "uu_blocks"]

_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# bytes.translate deletes these in one C pass: on a 1 MB attachment a regular expression
# substitution took several times as long as the decoding itself.
_NOT_B64 = bytes(b for b in range(256) if b not in _B64_CHARS)
_NOT_B64_TEXT = bytes(b for b in _NOT_B64 if b not in b"= \t\r\n\x0b\x0c")
_PARAM = re.compile(r';\s*([A-Za-z0-9_*.!#$%&\'^`{|}~-]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;\s]*)')
_SECTION = re.compile(r"^(.*?)\*(\d+)(\*?)$")
_UU_BEGIN = re.compile(rb"^begin(?:-base64)? [0-7]{3,4} (.+?)\r?$", re.MULTILINE)
_UU_END = re.compile(rb"^end\r?$", re.MULTILINE)


def _base64(body: bytes) -> tuple[bytes, bool]:
    # Junk (anything outside the alphabet, padding in the middle) is skipped, not fatal: the
    # reading that decodes the most content is the one a scanner must see. Clean base64 is the
    # alphabet, padding and white space; anything else is junk and marks the part repaired.
    repaired = len(body.translate(None, _NOT_B64_TEXT)) != len(body)
    cleaned = body.translate(None, _NOT_B64)
    extra = len(cleaned) % 4
    if extra == 1:
        cleaned, repaired = cleaned[:-1], True
    elif extra:
        cleaned += b"=" * (4 - extra)
    try:
        return binascii.a2b_base64(cleaned), repaired
    except binascii.Error:  # cannot happen after cleaning; kept so the walk never raises
        return b"", True


def _uudecode(body: bytes) -> tuple[bytes, bool]:
    out = bytearray()
    repaired = False
    for line in body.splitlines():
        if not line or line.startswith((b"begin ", b"end")):
            continue
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            # A line whose length byte lies: decode what it holds, as uudecode implementations do.
            repaired = True
            count = (line[0] - 32) & 63
            try:
                out += binascii.a2b_uu(line[: 1 + (count * 4 + 2) // 3].ljust(1 + (count * 4 + 2) // 3))
            except binascii.Error:
                continue
    return bytes(out), repaired


def transfer_decode(body: bytes, encoding: str) -> tuple[bytes, bool]:
    """The decoded body and whether it was malformed; unknown encodings come back as they are."""
    encoding = encoding.strip().strip('"').lower()
    if encoding == "base64":
        return _base64(body)
    if encoding == "quoted-printable":
        try:
            return binascii.a2b_qp(body), False
        except (binascii.Error, ValueError):
            return body, True
    if encoding in ("x-uuencode", "uuencode", "x-uue", "uue"):
        return _uudecode(body)
    return body, False


def uu_blocks(text: bytes, limit: int) -> list[tuple[str, bytes]]:
    """Up to ``limit`` uuencoded files (name, content) found inside a text body."""
    found: list[tuple[str, bytes]] = []
    for begin in _UU_BEGIN.finditer(text):
        if len(found) >= limit:
            break
        end = _UU_END.search(text, begin.end())
        block = text[begin.end() : end.start() if end else len(text)]
        name = begin.group(1).decode("utf-8", "replace")
        if begin.group(0).startswith(b"begin-base64"):
            data, _ = _base64(block)
        else:
            data, _ = _uudecode(block)
        found.append((name, data))
    return found


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded; a malformed word is left as written."""
    if "=?" not in value:
        return value
    try:
        pieces = decode_header(value)
    except Exception:  # the stdlib raises several types on malformed words
        return value
    out: list[str] = []
    for chunk, charset in pieces:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        try:
            out.append(chunk.decode(charset or "utf-8", "replace"))
        except (LookupError, ValueError):  # unknown charset, or one with a NUL in its name
            out.append(chunk.decode("utf-8", "replace"))
    return "".join(out)


def _rfc2231(value: str) -> str:
    """``charset'lang'percent-encoded`` to text (RFC 2231 §4)."""
    charset, _, rest = value.partition("'")
    _lang, _, encoded = rest.partition("'")
    if not _:
        charset, encoded = "utf-8", value
    raw = unquote_to_bytes(encoded)
    try:
        return raw.decode(charset or "utf-8", "replace")
    except (LookupError, ValueError):
        return raw.decode("utf-8", "replace")


def parameters(value: str) -> tuple[str, dict[str, list[str]]]:
    """The lower-cased value before the first ``;`` and every parameter's values, in order."""
    main = value.split(";", 1)[0].strip().lower()
    plain: dict[str, list[str]] = {}
    sections: dict[str, dict[int, tuple[str, bool]]] = {}
    for key, raw in _PARAM.findall(value):
        key = key.lower()
        if raw.startswith('"'):
            raw = raw[1:-1] if raw.endswith('"') and len(raw) >= 2 else raw[1:]
            raw = re.sub(r"\\(.)", r"\1", raw)
        section = _SECTION.match(key)
        if section is not None:
            sections.setdefault(section.group(1), {})[int(section.group(2))] = (raw, bool(section.group(3)))
        elif key.endswith("*"):
            plain.setdefault(key[:-1], []).append(_rfc2231(raw))
        else:
            plain.setdefault(key, []).append(decode_words(raw))
    for name, parts in sections.items():
        # RFC 2231 §4.1: only the first section carries the charset; later encoded ones are
        # percent-encoded in it.
        ordered = [parts[i] for i in sorted(parts)][:64]
        if ordered and ordered[0][1]:
            joined = "".join(v for v, _ in ordered)
            plain.setdefault(name, []).append(_rfc2231(joined))
        else:
            plain.setdefault(name, []).append("".join(v for v, _ in ordered))
    return main, plain
