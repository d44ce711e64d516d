"""Disclaimers, MIME-correct, spliced into the raw message.

Where: the message body, which is the root part when it is text, every text/plain and text/html
alternative of a ``multipart/alternative`` (recursively, so the HTML of a ``multipart/related``
alternative too), and the first part of a ``multipart/mixed`` or ``related`` that is not an
attachment. Never an attachment (``Content-Disposition: attachment``), never inside a forwarded
``message/rfc822``.

How: the part's body is decoded (its transfer encoding, then strictly its charset), the text
appended (HTML: before the last ``</body>``, else at the end; the plain text HTML-escaped unless
the rule gives markup), and encoded again in the part's charset and transfer encoding. A charset
that cannot hold the text (an ISO-8859-1 part, a Japanese disclaimer) turns the part into UTF-8;
a 7bit part that now needs 8 bits, or a line over 998 octets, becomes quoted-printable. Only the
part's ``Content-Type`` and ``Content-Transfer-Encoding`` fields are rewritten, from validated
tokens; every other byte of the message stays as it was. A part whose body does not decode
cleanly is left alone rather than corrupted.

Not twice: a part whose text already holds the disclaimer (a reply quoting our earlier mail,
``>`` markers and line breaks ignored) is skipped, and the message gets ``X-Edgeward-Disclaimer:
<rule>``; a message carrying that mark for the rule is not touched.

Signed or encrypted mail (``multipart/signed``, ``multipart/encrypted``, ``application/pkcs7-mime``,
inline PGP armour) is never changed inside: with ``signed = "wrap"`` (the default, Exchange's
fallback) the original becomes the ``message/rfc822`` attachment of a new message whose first
part carries the disclaimer, so the signature still verifies when the attachment is opened; with
``"skip"`` it goes out as it came, without the disclaimer (logged).
"""

from __future__ import annotations

import binascii
import html
import itertools
import re
import secrets
from dataclasses import dataclass, field

from edgeward.headers import header_end, parse_headers, remove_fields
from edgeward.scanning.decode import parameters, transfer_decode

__all__ = ["DisclaimerResult", "Part", "add_disclaimer", "parse_tree"]

MARK_HEADER = "X-Edgeward-Disclaimer"
MAX_DEPTH = 20
MAX_PARTS = 500
_OPAQUE = ("multipart/signed", "multipart/encrypted", "application/pkcs7-mime", "application/x-pkcs7-mime",
           "application/pgp-encrypted", "application/pgp-signature")  # fmt: skip
_PGP = re.compile(rb"-----BEGIN PGP (?:SIGNED )?MESSAGE-----")
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")  # RFC 2046 5.1.1
_TOKEN = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
_QUOTES = re.compile(r"[\s>]+")
_REWRITTEN = (b"content-type:", b"content-type ", b"content-transfer-encoding:",
              b"content-transfer-encoding ")  # fmt: skip
_TAGS = re.compile(r"<[^<>]{0,2000}>")


@dataclass
class Part:
    """A MIME entity in the raw bytes: header at ``start``, body from ``body`` to ``end``."""

    start: int
    body: int
    end: int
    ctype: str
    params: dict[str, list[str]]
    cte: str
    attachment: bool
    children: list[Part] = field(default_factory=list)
    ambiguous: bool = False

    @property
    def charset(self) -> str:
        return (self.params.get("charset") or ["us-ascii"])[0].strip().lower() or "us-ascii"


def _entity(
    data: bytes, start: int, end: int, depth: int, budget: list[int], default: str = "text/plain"
) -> Part:
    budget[0] -= 1
    head_end = start + header_end(data[start:end])
    head = parse_headers(data[start:head_end])
    ctype, params = parameters(head.get("Content-Type") or default)
    cte = head.get("Content-Transfer-Encoding").strip().lower()
    disposition = head.get("Content-Disposition").split(";", 1)[0].strip().lower()
    part = Part(start, head_end, end, ctype, params, cte, disposition == "attachment")
    boundary = (params.get("boundary") or [""])[0]
    # Where readers could disagree (two Content-Type or transfer encoding fields, a boundary
    # outside RFC 2046's grammar) the part is not understood well enough to change.
    part.ambiguous = (head.count("Content-Type") > 1 or head.count("Content-Transfer-Encoding") > 1
                      or (ctype.startswith("multipart/") and not _BOUNDARY.match(boundary)))  # fmt: skip
    if part.ambiguous:
        return part
    if ctype.startswith("multipart/") and depth < MAX_DEPTH and ctype not in _OPAQUE:
        # RFC 2046 5.1.1: a delimiter is a line of its own; the CRLF before it belongs to it.
        quoted = re.escape(boundary.encode("utf-8", "replace"))
        delimiter = re.compile(rb"(?m)^--" + quoted + rb"(--)?[ \t]*\r$")
        marks = list(delimiter.finditer(data, head_end, end))
        for first, second in itertools.pairwise(marks):
            if first.group(1) or budget[0] <= 0:
                break
            child_start = first.end() + 1
            child_end = second.start()
            if data[child_end - 2 : child_end] == b"\r\n":
                child_end -= 2
            if child_start <= child_end:
                # RFC 2046 5.1.5: a digest's parts are messages unless they say otherwise.
                child = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
                part.children.append(_entity(data, child_start, child_end, depth + 1, budget, child))
    return part


def parse_tree(data: bytes) -> Part:
    """The MIME tree of ``data``, bounded in depth and parts."""
    return _entity(data, 0, len(data), 0, [MAX_PARTS])


def _pgp(part: Part, data: bytes) -> bool:
    body, _ = transfer_decode(data[part.body : part.end], part.cte)
    return _PGP.search(body) is not None


def body_parts(part: Part, opaque: list[Part]) -> list[Part]:
    """The text parts that make the message body (see the module docstring); a signed or
    encrypted entity on the way is put in ``opaque`` instead of being entered."""
    if part.ctype in _OPAQUE:
        opaque.append(part)
        return []
    if part.ambiguous:
        return []
    if part.ctype in ("text/plain", "text/html"):
        return [] if part.attachment else [part]
    if part.ctype == "multipart/alternative":
        return [p for c in part.children for p in body_parts(c, opaque)]
    if part.ctype.startswith("multipart/"):
        for child in part.children:
            if not child.attachment:
                return body_parts(child, opaque)
    return []


def _normalised(text: str) -> str:
    return _QUOTES.sub(" ", text).strip().lower()


def _insert(text: str, is_html: bool, plain: str, markup: str | None) -> str:
    newline = "\r\n" if "\r\n" in text else "\n"
    if not is_html:
        return text.rstrip("\r\n") + newline + newline + plain.replace("\n", newline) + newline
    escaped = "<p>" + html.escape(plain).replace("\n", "<br>" + newline) + "</p>"
    snippet = markup if markup is not None else escaped
    at = text.lower().rfind("</body>")
    if at < 0:
        return text + newline + snippet + newline
    return text[:at] + snippet + newline + text[at:]


def _encode(text: str, charset: str, cte: str, boundaries: list[bytes]) -> tuple[bytes, str, str]:
    """Body bytes (CRLF), the charset and the transfer encoding they are in."""
    try:
        raw = text.encode(charset)
    except (UnicodeEncodeError, LookupError):
        charset, raw = "utf-8", text.encode("utf-8")
    raw = raw.replace(b"\r\n", b"\n")
    lines = raw.split(b"\n")
    # A line that reads as an enclosing delimiter would cut the part short, even quoted-printable.
    clash = any(line.startswith(b"--" + b) for line in lines for b in boundaries)
    if cte == "base64" or clash:
        b64 = binascii.b2a_base64(raw.replace(b"\n", b"\r\n"), newline=False)
        return b"\r\n".join(b64[i : i + 76] for i in range(0, len(b64), 76)) + b"\r\n", charset, "base64"
    fits = all(len(line) <= 998 for line in lines)
    if (cte in ("8bit", "binary") and fits) or (cte in ("", "7bit") and fits and raw.isascii()):
        return raw.replace(b"\n", b"\r\n"), charset, cte
    qp = binascii.b2a_qp(raw, istext=True).replace(b"\n", b"\r\n")
    return qp, charset, "quoted-printable"


def _fields(part: Part, charset: str, cte: str) -> bytes:
    """The part's new Content-Type and Content-Transfer-Encoding: only tokens we validated."""
    kept = [f"{k}={v[0]}" for k, v in part.params.items()
            if k in ("format", "delsp") and v and _TOKEN.match(v[0])]  # fmt: skip
    if not _TOKEN.match(charset):
        charset = "utf-8"
    ctype = "; ".join([part.ctype, f'charset="{charset}"', *kept])
    out = f"Content-Type: {ctype}\r\n"
    if cte:
        out += f"Content-Transfer-Encoding: {cte}\r\n"
    return out.encode("ascii")


@dataclass(frozen=True, slots=True)
class DisclaimerResult:
    data: bytes
    parts: int  # text parts that got the disclaimer
    skipped: str = ""  # why nothing was added, when nothing was


def _rewrite(
    data: bytes, part: Part, plain: str, markup: str | None, boundaries: list[bytes]
) -> bytes | None:
    head = data[part.start : part.body]
    if not (head.endswith(b"\r\n\r\n") or head == b"\r\n"):
        return None  # a header block without its empty line: no body to add to
    decoded, broken = transfer_decode(data[part.body : part.end], part.cte)
    if broken:
        return None
    try:
        text = decoded.decode(part.charset)
    except (UnicodeDecodeError, LookupError):
        return None
    is_html = part.ctype == "text/html"
    seen = html.unescape(_TAGS.sub(" ", text)) if is_html else text
    if _normalised(plain) in _normalised(seen) or (markup is not None and is_html and markup in text):
        return None
    body, charset, cte = _encode(_insert(text, is_html, plain, markup), part.charset, part.cte, boundaries)
    head = remove_fields(head, _REWRITTEN)
    if head.startswith(b"\r\n"):
        head = head[2:]
    blank = head.endswith(b"\r\n\r\n")
    head = (head[:-2] if blank else head) + _fields(part, charset, cte) + b"\r\n"
    return head + body


def _boundaries(tree: Part, target: Part) -> list[bytes]:
    path: list[bytes] = []

    def walk(p: Part) -> bool:
        if p is target:
            return True
        for c in p.children:
            if walk(c):
                path.append((p.params.get("boundary") or [""])[0].encode("utf-8", "replace"))
                return True
        return False

    walk(tree)
    return path


def wrap(data: bytes, plain: str) -> bytes:
    """A new message: the top header (less its Content-* fields), the disclaimer, the original."""
    end = header_end(data)
    head = remove_fields(data[:end], (b"content-", b"mime-version"))
    head = head[:-2] if head.endswith(b"\r\n\r\n") else head + (b"" if head.endswith(b"\r\n") else b"\r\n")
    boundary = f"=_edgeward_{secrets.token_hex(12)}".encode("ascii")
    raw = plain.replace("\r\n", "\n").encode("utf-8") + b"\n"
    text = binascii.b2a_qp(raw, istext=True).replace(b"\n", b"\r\n")
    return (head + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"" + boundary
            + b"\"\r\n\r\n"
            b"--" + boundary + b"\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + text +
            b"--" + boundary + b"\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
            + data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b"--" + boundary + b"--\r\n")  # fmt: skip


def add_disclaimer(
    data: bytes, plain: str, markup: str | None = None, *, signed: str = "wrap"
) -> DisclaimerResult:
    """``data`` with the disclaimer in every body text part (or wrapped, when signed)."""
    tree = parse_tree(data)
    opaque: list[Part] = []
    targets = sorted(body_parts(tree, opaque), key=lambda p: p.start, reverse=True)
    if opaque or any(p.ctype == "text/plain" and _pgp(p, data) for p in targets):
        if signed == "skip":
            return DisclaimerResult(data, 0, "signed or encrypted")
        return DisclaimerResult(wrap(data, plain), 1)
    if not targets:
        return DisclaimerResult(data, 0, "no text body part")
    done = 0
    for part in targets:
        new = _rewrite(data, part, plain, markup, _boundaries(tree, part))
        if new is None:
            continue
        # The root's header is the message's; any other part is spliced in place.
        data = new if part is tree else data[: part.start] + new + data[part.end :]
        done += 1
        if part is tree and not parse_headers(data).get_all("MIME-Version"):
            # A Content-Type now stands in the message header; without MIME-Version (RFC 2045
            # section 4) a reader may ignore it and the charset with it.
            end = header_end(data)
            data = data[: end - 2] + b"MIME-Version: 1.0\r\n" + data[end - 2 :]
    return DisclaimerResult(data, done, "" if done else "already present or not decodable")
