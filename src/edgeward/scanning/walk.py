"""One bounded walk over a message: every leaf part decoded, every archive member unpacked.

``walk_message`` turns raw message bytes into the ``ScanItem`` list every scan engine and the
attachment filter read (``ports.ScanItem``), and the structural findings the walk made on the
way. It reads only the ``Content-*`` fields of each entity; everything else is the content
filter's business (``content.mime``, which reads text for the classifier with its own bounds).

Bounds (``WalkLimits``): MIME depth (multipart and message/rfc822 nesting), number of entities,
decoded bytes over the whole message, and for archives depth, members, total expansion and
ratio (``scanning.archives``). Reaching a bound stops that branch and is a finding
(``MIME_TOO_DEEP``, ``MIME_TOO_MANY_PARTS``, ``MIME_TOO_LARGE``, ``ARCHIVE_TOO_DEEP``,
``ARCHIVE_BOMB``), and ``Walk.cut`` is set: what was not reached was not scanned, so the
attachment filter refuses such a message (``config.attachments``) rather than let it pass as
clean. The recursion depth is the MIME depth bound, far below Python's limit, and every split
is a regex scan over bytes already in memory: a 10,000-level nesting costs ``max_depth`` scans.

The most suspicious reading: where parsers could disagree the walk takes every reading and
scans what each one yields. Two Content-Type fields, or two ``boundary`` parameters: the body
is split by each boundary, and also scanned whole when one reading says it is a leaf. Every
file name a client might show (``name=`` and ``filename=``, RFC 2231 and RFC 2047 forms, the
part before a NUL) is kept in ``Entry.names`` for the filter; a part whose base64 had to be
repaired is decoded past the junk. Disagreements are ``MIME_AMBIGUOUS``; repairs
``MIME_DECODE_ERROR``.

Each ``Entry`` also records where its content sits in the original bytes (``Span``: the MIME
entity that holds it, or the outermost one when it was decoded out of an encoded part or an
archive) and whether it sits under a signature, for the strip transform.

Security: nothing here writes a file or runs a program; names are escaped before they reach
``ScanItem.path`` or ``.name`` (``scanning.names``), and ``walk_message`` never raises on any
input (a bug in a branch is reported as ``MIME_DECODE_ERROR`` and marks the walk cut).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from edgeward.ports import ScanItem
from edgeward.scanning import archives, names
from edgeward.scanning.decode import parameters, transfer_decode, uu_blocks
from edgeward.scanning.truetype import TEXT, true_type

__all__ = ["Entry", "Span", "Walk", "WalkLimits", "walk_message"]

log = logging.getLogger("edgeward.scanning")

_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*)$")
_SIGNED_TYPES = ("multipart/signed", "application/pkcs7-mime", "application/x-pkcs7-mime")
# Programs by content, and the names and types a program honestly travels under: anything else
# is a program in disguise (``invoice.pdf`` that is a PE file).
EXECUTABLE_TYPES = frozenset({
    "application/x-dosexec", "application/vnd.microsoft.portable-executable", "application/x-msdownload",
    "application/x-executable", "application/x-sharedlib", "application/x-pie-executable",
    "application/x-mach-binary", "application/x-elf",
})  # fmt: skip
_PROGRAM_SUFFIXES = (".exe", ".dll", ".com", ".scr", ".sys", ".cpl", ".ocx", ".drv", ".efi", ".so", ".bin",
                     ".msi", ".pif", ".elf", ".run", ".out")  # fmt: skip
_PROGRAM_DECLARED = frozenset({
    "application/octet-stream", "application/x-msdownload", "application/x-dosexec",
    "application/x-msdos-program", "application/x-executable", "application/exe", "application/x-exe", "",
})  # fmt: skip
MAX_VALUES = 8  # values kept per Content-* field name: more is noise, and bounded work


@dataclass(frozen=True, slots=True)
class WalkLimits:
    """Upper bounds on the work done for one message (``[attachments]`` sets them)."""

    max_depth: int = 20
    max_parts: int = 500
    max_decoded_bytes: int = 64 * 1024 * 1024
    archive: archives.ArchiveLimits = field(default_factory=archives.ArchiveLimits)
    # False: every item gets libmagic's answer without its text tests (``truetype``); text no
    # binary test names is then ``text/plain`` marked ``coarse``, and the consumers that tell
    # text subtypes apart ask ``truetype.refine`` for the items they look at.
    text_subtypes: bool = True
    # False as well (no Office engine, whose CSV check reads the walk's answer): a body part
    # that is ASCII without a NUL is ``coarse`` text/plain without asking libmagic at all. No
    # binary type can be written so (every one has a NUL or a byte above 0x7f in its first
    # bytes), ``refine`` still reads CSV, JSON or a script there for whoever asks, and libmagic was
    # the largest single cost of the receiving process's loop on plain 2 KB mail (6.5 %, py-spy
    # under bench/antispam_bench.py).
    body_libmagic: bool = True
    # False: a leaf the file walk decodes in a stream (``walk_file``) keeps only its first bytes
    # unless it is an archive or an OLE container, for a configuration whose engines all read
    # the message themselves (clamd) and none needs every leaf in memory (YARA, the Office
    # engine, a hash list); the items are then ``partial`` and clamd is sent the whole file.
    hold_leaves: bool = True


@dataclass(frozen=True, slots=True)
class Span:
    """A MIME entity in the original bytes: ``start`` of its header, ``body`` of its content,
    ``end`` past its last byte; ``root`` for the message itself."""

    start: int
    body: int
    end: int
    root: bool = False


@dataclass(frozen=True, slots=True)
class Entry:
    """One scanned item with what the filter and the strip transform need beside it."""

    item: ScanItem
    names: tuple[str, ...] = ()  # every candidate file name, unescaped (never used as a path)
    declared_types: tuple[str, ...] = ()  # every Content-Type the entity declares
    span: Span | None = None
    signed: bool = False  # inside multipart/signed or S/MIME: changing it breaks the signature
    member: bool = False  # an archive member, not a MIME part


@dataclass
class Walk:
    """The result: items for the engines, entries for the filter, findings for the score table."""

    items: list[ScanItem] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    findings: list[tuple[str, str]] = field(default_factory=list)
    cut: bool = False  # a bound was reached: part of the message was not walked
    signed: bool = False

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)
        self.items.append(entry.item)

    def finding(self, name: str, detail: str, *, cut: bool = False) -> None:
        self.cut = self.cut or cut
        if (name, detail) not in self.findings and len(self.findings) < 100:
            self.findings.append((name, detail))


@dataclass(slots=True)
class _Ctx:
    """Where an entity sits: its number, the span it can be stripped by, signature, depth."""

    number: str
    depth: int
    outer: Span | None  # set when the bytes are not the original's (decoded out of a part)
    signed: bool
    default_type: str = "text/plain"
    part: bool = False  # a multipart's child (a message's own header may start with mbox "From ")


def _fields(head: bytes) -> dict[str, list[str]]:
    """The Content-* fields of a header block, unfolded; at most MAX_VALUES per name."""
    return _field_lines(head.split(b"\n"))


def _field_lines(lines: Iterable[bytes]) -> dict[str, list[str]]:
    """``_fields`` over the block's lines (split at LF), so a file's block is read in pieces."""
    raw: list[tuple[str, list[bytes]]] = []
    keep = False
    for line in lines:
        line = line.rstrip(b"\r")
        if line[:1] in (b" ", b"\t"):
            if keep:
                raw[-1][1].append(line.strip())
            continue
        match = _FIELD.match(line)
        name = match.group(1).decode("ascii", "replace").lower() if match else ""
        keep = name.startswith("content-") and sum(1 for n, _ in raw if n == name) < MAX_VALUES
        if keep and match is not None:
            raw.append((name, [match.group(2).strip()]))
    out: dict[str, list[str]] = {}
    for name, parts in raw:
        out.setdefault(name, []).append(b" ".join(parts).decode("utf-8", "replace"))
    return out


def delimiter_lines(data: bytes, boundary: bytes, pos: int, endpos: int) -> Iterator[tuple[int, int, bool]]:
    """The delimiter lines of ``boundary`` in ``data[pos:endpos]``: (start, end, closing) each.

    What ``re.compile(rb"^--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$", re.MULTILINE)``'s
    ``finditer(data, pos, endpos)`` finds (end: before the line feed; closing: the ``--`` after
    the boundary), but searched for by its literal: an anchored pattern has no literal to skip
    ahead to, so it was tried at every byte of every part, base64 and all (12 % of the
    receiving process on the anti-virus benchmark's 1 MB attachments). ``^`` matches at the
    real start of ``data`` and after a line feed, ``$`` before one and at ``endpos``.
    """
    needle = b"--" + boundary
    endpos = min(endpos, len(data))
    at = data.find(needle, pos, endpos)
    while at >= 0:
        if at == 0 or data[at - 1] == 0x0A:
            cursor = at + len(needle)
            closing = data.startswith(b"--", cursor, endpos)
            if closing:
                cursor += 2
            while cursor < endpos and data[cursor] in (0x20, 0x09):
                cursor += 1
            if cursor < endpos and data[cursor] == 0x0D:
                cursor += 1
            if cursor == endpos or data[cursor] == 0x0A:
                yield at, cursor, closing
                at = data.find(needle, cursor, endpos)
                continue
            # A \r the line does not end with belongs to the rest of the line: no delimiter here.
        at = data.find(needle, at + 1, endpos)


def _split_head(data: bytes, start: int, end: int, *, part: bool) -> int:
    """Where the body of the entity at ``start`` begins (its header ends at a blank line)."""
    if data.startswith(b"\r\n", start) or data.startswith(b"\n", start):
        return start + (2 if data.startswith(b"\r\n", start) else 1)  # no header at all
    newline = data.find(b"\n", start, end)
    first = data[start : newline if newline >= 0 else end].rstrip(b"\r")
    if part and not _FIELD.match(first):
        # A part whose content follows its delimiter without header or blank line: clients
        # show it as the body, so it is scanned as one rather than read as a broken header.
        return start
    blank = _BLANK_LINE.search(data, start, end)
    return blank.end() if blank else end


class _Walker:
    def __init__(self, limits: WalkLimits) -> None:
        self.limits = limits
        self.walk = Walk()
        self.parts = 0
        self.decoded = 0
        self.unpacker = archives.Unpacker(limits.archive)

    # -- MIME entities ----------------------------------------------------------------------

    def entity(self, data: bytes, start: int, end: int, ctx: _Ctx) -> None:
        walk, limits = self.walk, self.limits
        self.parts += 1
        if self.parts > limits.max_parts:
            walk.finding("MIME_TOO_MANY_PARTS", f"more than {limits.max_parts} parts", cut=True)
            return
        if ctx.depth > limits.max_depth:
            walk.finding("MIME_TOO_DEEP", f"nesting deeper than {limits.max_depth}", cut=True)
            return
        body, fields = self.head(data, start, end, ctx.part)
        span = ctx.outer or Span(start, body, end, root=ctx.number == "")
        types = [parameters(v) for v in fields.get("content-type", [])]
        mains = list(dict.fromkeys(m for m, _ in types if "/" in m)) or [ctx.default_type]
        if len(mains) > 1:
            shown = " and ".join(names.escape(m, 60) for m in mains[:3])
            walk.finding("MIME_AMBIGUOUS", f"part {ctx.number or 0}: Content-Type {shown}")
        boundaries = list(dict.fromkeys(b for _, p in types for b in p.get("boundary", []) if b))
        signed = ctx.signed or any(m in _SIGNED_TYPES for m in mains)
        walk.signed = walk.signed or signed
        declared = fields.get("content-transfer-encoding", [])
        encodings = list(dict.fromkeys(v.strip().lower() for v in declared))
        if len(encodings) > 1:
            shown = ", ".join(names.escape(e, 30) for e in encodings[:3])
            walk.finding("MIME_AMBIGUOUS", f"part {ctx.number or 0}: transfer encodings {shown}")
        is_multi = any(m.startswith("multipart/") for m in mains)
        is_message = any(m in ("message/rfc822", "message/global") for m in mains)
        split = False
        if is_multi:
            if not boundaries:
                walk.finding("MIME_DECODE_ERROR", f"part {ctx.number or 0}: multipart without boundary")
            if len(boundaries) > 1:
                walk.finding("MIME_AMBIGUOUS", f"part {ctx.number or 0}: {len(boundaries)} boundaries")
            child = "message/rfc822" if "multipart/digest" in mains else "text/plain"
            for boundary in boundaries[:MAX_VALUES]:
                split = self.multipart(data, body, end, boundary, ctx, child, signed) or split
        if is_message:
            self.message(data, body, end, encodings, ctx, span, signed)
        others = [m for m in mains if not m.startswith(("multipart/", "message/rfc822", "message/global"))]
        # A leaf in another reading, or a multipart whose boundary never occurs: the bytes are
        # still content some client will show.
        if others or (is_multi and not split):
            # Types without a subtype (Exchange lists "x-internet-signup") still go to the filter.
            odd = [m for m, _ in types if m and "/" not in m]
            self.leaf(data, body, end, fields, types, (others or mains) + odd, encodings, ctx, span, signed)

    def head(self, data: bytes, start: int, end: int, part: bool) -> tuple[int, dict[str, list[str]]]:
        """Where the entity's body starts, and its Content-* fields."""
        body = _split_head(data, start, end, part=part)
        return body, _fields(data[start:body])

    def multipart(
        self, data: bytes, body: int, end: int, boundary: str, ctx: _Ctx, child: str, signed: bool
    ) -> bool:
        """Walk the parts ``boundary`` delimits; whether it delimits any."""
        starts: list[tuple[int, int]] = []  # (start of the delimiter line, start of the next part)
        closed = False
        for start, line_end, closing in delimiter_lines(data, boundary.encode("utf-8", "replace"), body, end):
            if data.startswith(b"\n", line_end):
                line_end += 1
            starts.append((start, line_end))
            if closing:
                closed = True
                break
            if len(starts) > self.limits.max_parts + 1:
                break
        if not starts:
            self.walk.finding("MIME_DECODE_ERROR", f"part {ctx.number or 0}: boundary never occurs")
            return False
        if not closed:
            self.walk.finding("MIME_DECODE_ERROR", f"part {ctx.number or 0}: multipart not closed")
        self.text_blocks(data[body : starts[0][0]], ctx, f"{ctx.number}.preamble".lstrip("."))
        bounds = [*starts[1:], (end, end)] if not closed else starts[1:]
        prefix = f"{ctx.number}." if ctx.number else ""
        for index, ((_, part_start), (next_delim, _)) in enumerate(zip(starts, bounds, strict=False), 1):
            part_end = next_delim
            # The line break before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
            if part_end > part_start and data[part_end - 1 : part_end] == b"\n":
                part_end -= 2 if data[part_end - 2 : part_end] == b"\r\n" else 1
            sub = _Ctx(f"{prefix}{index}", ctx.depth + 1, ctx.outer, signed, child, part=True)
            self.entity(data, part_start, max(part_start, part_end), sub)
            if self.walk.cut and self.parts > self.limits.max_parts:
                break
        if closed:
            self.text_blocks(data[starts[-1][1] : end], ctx, f"{ctx.number}.epilogue".lstrip("."))
        return True

    def message(
        self, data: bytes, body: int, end: int, encodings: list[str], ctx: _Ctx, span: Span, signed: bool
    ) -> None:
        """A message/rfc822 part: walk the enclosed message, decoded first if it was encoded."""
        for encoding in encodings or ["7bit"]:
            if encoding in ("7bit", "8bit", "binary", ""):  # the original bytes: spans stay exact
                self.entity(data, body, end, _Ctx(ctx.number or "1", ctx.depth + 1, ctx.outer, signed))
                continue
            inner, repaired = transfer_decode(data[body:end], encoding)
            if repaired:
                self.walk.finding("MIME_DECODE_ERROR", f"part {ctx.number or 0}: malformed {encoding}")
            self.entity(inner, 0, len(inner), _Ctx(ctx.number or "1", ctx.depth + 1, span, signed))

    # -- leaves -----------------------------------------------------------------------------

    def budget(self, data: bytes, where: str) -> bytes:
        room = self.limits.max_decoded_bytes - self.decoded
        if len(data) > room:
            self.walk.finding("MIME_TOO_LARGE", f"decoded content over {self.limits.max_decoded_bytes} bytes",
                              cut=True)  # fmt: skip
            log.info("walk cut at %s: decoded-bytes bound", where)
            data = data[: max(room, 0)]
        self.decoded += len(data)
        return data

    def leaf(
        self,
        data: bytes,
        body: int,
        end: int,
        fields: dict[str, list[str]],
        types: list[tuple[str, dict[str, list[str]]]],
        mains: list[str],
        encodings: list[str],
        ctx: _Ctx,
        span: Span,
        signed: bool,
    ) -> None:
        found = self.leaf_names(fields, types, ctx)
        raw = data[body:end]
        number = ctx.number or "1"
        for encoding in encodings or ["7bit"]:
            content, repaired = transfer_decode(raw, encoding)
            if repaired:
                self.walk.finding("MIME_DECODE_ERROR", f"part {number}: malformed {encoding}")
            content = self.budget(content, number)
            self.item(content, found, mains, number, span, signed, member=False, depth=0)
            if mains[0].startswith("text/") or not found:
                self.text_blocks(content, ctx, number)

    def leaf_names(
        self, fields: dict[str, list[str]], types: list[tuple[str, dict[str, list[str]]]], ctx: _Ctx
    ) -> list[str]:
        """Every file name the entity is given, in order, once each."""
        found = [n for _, p in types for n in p.get("name", [])]
        for value in fields.get("content-disposition", []):
            found += parameters(value)[1].get("filename", [])
        found = list(dict.fromkeys(n for n in found if n))
        # Names whose types disagree (harmless.pdf / payload.exe); one name with and one without
        # an extension (Thunderbird's OpenPGP_signature.asc / OpenPGP_signature) is no trick.
        suffixes = {n.rsplit(".", 1)[-1].lower() for n in found if "." in n}
        if len(suffixes) > 1:
            shown = " / ".join(names.escape(n, 60) for n in found[:3])
            self.walk.finding("MIME_AMBIGUOUS", f"part {ctx.number or 0}: file names {shown}")
        return found

    def text_blocks(self, text: bytes, ctx: _Ctx, number: str) -> None:
        """uuencoded files pasted into text: clients show them as attachments, so they are ones."""
        if b"begin" not in text:
            return
        room = self.limits.max_parts - self.parts
        span = ctx.outer
        for index, (name, content) in enumerate(uu_blocks(text, max(room, 0)), 1):
            self.parts += 1
            content = self.budget(content, number)
            self.item(content, [name], ["application/octet-stream"], f"{number}.uu{index}", span, ctx.signed,
                      member=False, depth=0)  # fmt: skip

    def item(
        self,
        content: bytes,
        found: list[str],
        declared: list[str],
        where: str,
        span: Span | None,
        signed: bool,
        *,
        member: bool,
        depth: int,
        plain: bool | None = None,
        sha256: str = "",
        partial: bool = False,
    ) -> None:
        """Record one item, then unpack it when its content is an archive.

        ``content`` is the whole decoded item unless ``partial``: then it is its first bytes
        (``truetype.SNIFF_BYTES``, all libmagic reads), ``sha256`` the digest of the whole and
        ``plain`` whether the whole is ASCII without a NUL; the file walk makes such items only
        of content that is neither an archive nor an OLE container (``walk_file``)."""
        readings = [c for n in found for c in names.candidates(n)]
        for name in found:
            why = names.hostile(name)
            if why:
                self.walk.finding("ATTACH_NAME_HOSTILE", f"{where[:300]}: {why}")
        name = names.escape(found[0]) if found else ""
        path = f"{where}/{name}" if name and not member else where
        body_text = (
            not found
            and not member
            and bool(declared)
            and all(t.lower().startswith("text/") for t in declared)
        )
        if (
            body_text
            and not self.limits.body_libmagic
            and (content.isascii() and b"\x00" not in content if plain is None else plain)
        ):
            kind, coarse = TEXT, True
        else:
            kind = true_type(content, text_subtype=self.limits.text_subtypes)
            coarse = kind == TEXT and not self.limits.text_subtypes
        declared_type = declared[0] if declared else ""
        item = ScanItem(content, path, name, declared_type, kind, partial, sha256, coarse=coarse)
        self.walk.add(Entry(item, tuple(readings), tuple(declared), span, signed, member))
        if kind in EXECUTABLE_TYPES and _disguised(found, declared):
            self.walk.finding("ATTACH_TYPE_MISMATCH", f"{path}: a program ({kind}) named or typed otherwise")
        self.walk.signed = self.walk.signed or signed
        if archives.is_encrypted_office(content):
            self.walk.finding("ARCHIVE_ENCRYPTED", f"{path}: encrypted Office document")
        kind_of = archives.archive_kind(content)
        if kind_of is None:
            return
        if depth >= self.limits.archive.max_depth:
            self.walk.finding("ARCHIVE_TOO_DEEP", f"{path}: archives nested deeper than "
                              f"{self.limits.archive.max_depth}", cut=True)  # fmt: skip
            return
        listing = self.unpacker.unpack(content, kind_of, path)
        for name_, detail, cut in listing.findings:
            self.walk.finding(name_, detail, cut=cut)
        for member_ in listing.members:
            where_ = f"{path}!{names.escape(member_.name)}"
            self.item(member_.data, [member_.name], [""], where_, span, signed, member=True, depth=depth + 1)


def _disguised(found: list[str], declared: list[str]) -> bool:
    """Whether a program's names or declared types say it is something else."""
    if any(not n.lower().rstrip(" .").endswith(_PROGRAM_SUFFIXES) for n in found):
        return True
    return any(t not in _PROGRAM_DECLARED for t in declared)


def walk_message(data: bytes, limits: WalkLimits | None = None) -> Walk:
    """Walk ``data`` (a whole message, any line endings); never raises."""
    walker = _Walker(limits or WalkLimits())
    try:
        walker.entity(data, 0, len(data), _Ctx("", 0, None, False))
    except RecursionError:
        walker.walk.finding("MIME_TOO_DEEP", "nesting beyond the interpreter's limit", cut=True)
    except Exception as exc:  # a bug must cost this message a refusal, never the worker
        log.exception("walk failed")
        walker.walk.finding("MIME_DECODE_ERROR", f"walk failed: {type(exc).__name__}", cut=True)
    return walker.walk
