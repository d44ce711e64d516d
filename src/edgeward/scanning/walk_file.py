"""The scanning walk over a message kept in a file, without a whole copy of it in memory.

``walk_file(message, limits)`` gives what ``walk_message(message.materialize(), limits)`` gives
(items' paths, names, declared and true types, entries, spans into the logical message, findings,
``cut``, ``signed``) while the receiving process holds only bounded pieces of the message.

Design. ``_FileWalker`` is the in-memory ``_Walker`` with its reading steps replaced wherever the
data is the file (``_Source``); a message/rfc822 part that had to be decoded, and every leaf
small enough, is bytes again and goes through the in-memory code unchanged, so both walks share
every decision. The in-memory walk pays only a method call per entity for this.

* Structure: header blocks and multipart delimiters are found in line-aligned windows of the
  file (``WINDOW`` bytes, each window ending after a line feed, with the byte before it for
  ``^``), so a regex sees whole lines exactly as it does over the whole bytes. A line longer
  than a window is gathered whole, unless it is longer than ``LONG_LINE`` and cannot start a
  delimiter (``--``) or a uuencoded file (``begin``): then it is skipped (a minified HTML part,
  a base64 body without line breaks), since no match can lie inside it.
* Leaves: one whose raw size is at most ``LEAF_BOUND`` is read and handled as in memory. A
  larger one is decoded in a stream (base64 kept 4-character aligned after the same junk
  removal as ``decode``; quoted-printable decoded line by line, which is what ``a2b_qp`` does
  anyway; 7bit/8bit/binary and unknown encodings pass through; uuencode is read whole, within
  the decoded-bytes bound). Its item keeps the whole content only when it is an archive or an
  OLE container (by its first bytes: ``archives.archive_kind``, the OLE magic that
  ``archives.is_encrypted_office`` starts from) or ``WalkLimits.hold_leaves`` is set; otherwise
  it keeps the first ``truetype.SNIFF_BYTES`` (all libmagic reads, so ``true_type`` is the same)
  and is ``partial``, with the SHA-256 of the whole. uuencoded files in a large text are found
  by a one-pass scan of the decoded stream (``_UUScan``) that gives ``decode.uu_blocks``'s answer.
* Budget: ``max_decoded_bytes`` counts the decoded size, cut at the bound as in memory.

Differences from ``walk_message`` (memory, never results): a message/rfc822 part with a
transfer encoding, a uuencoded leaf, a header line and a quoted-printable line longer than a
window, and a long line that starts like a delimiter or a uuencoded file are read whole.

Security: nothing here writes decoded content to disk, runs a program or follows a name from
the mail; ``walk_file`` never raises on any input (an I/O error or a bug marks the walk cut
with ``MIME_DECODE_ERROR``, as ``walk_message`` does for a bug).
"""

from __future__ import annotations

import binascii
import hashlib
import logging
import re
from collections.abc import Callable, Iterator

from edgeward.message_file import MessageFile
from edgeward.scanning import archives
from edgeward.scanning.decode import _NOT_B64, _NOT_B64_TEXT, _base64, _uudecode, transfer_decode
from edgeward.scanning.truetype import SNIFF_BYTES
from edgeward.scanning.walk import (
    _BLANK_LINE,
    _FIELD,
    Span,
    Walk,
    WalkLimits,
    _Ctx,
    _field_lines,
    _Walker,
)

__all__ = ["LEAF_BOUND", "LONG_LINE", "WINDOW", "walk_file"]

log = logging.getLogger("edgeward.scanning")

#: The piece of the file a structural regex sees at once.
WINDOW = 256 * 1024
#: A leaf up to this raw size is read whole and handled exactly as in memory.
LEAF_BOUND = 256 * 1024
#: A line longer than this is skipped by the delimiter and uuencode scans unless it starts the
#: way their lines do (``_Aligner``).
LONG_LINE = 1024 * 1024
_HEAD_WINDOW = 16 * 1024  # header blocks are small: read them in small pieces
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_UU_BEGIN = re.compile(rb"^begin(?:-base64)? [0-7]{3,4} (.+?)\r?$", re.MULTILINE)
_UU_END = re.compile(rb"^end\r?$", re.MULTILINE)
_NAME_PREFIX = re.compile(rb"[!-9;-~]*[ \t]*\Z")  # a first line that may still become a field


class _Aligner:
    """Bytes given in any pieces, passed on in pieces that end after a line feed (the last one
    may not). A line longer than ``long_line`` that ``may_skip`` lets go is passed on as its
    length only: the scans that use this look only at lines starting with a few known bytes
    (a delimiter's ``--``, a uuencoded file's ``begin``), so a minified HTML part or a base64
    body without line breaks is never held whole."""

    def __init__(self, emit: Callable[[bytes | int], None], long_line: int = 0,
                 may_skip: Callable[[bytes], bool] | None = None) -> None:  # fmt: skip
        self.emit = emit
        self.long_line = long_line
        self.may_skip = may_skip
        self.pending: list[bytes] = []  # a line not yet ended, gathered to be joined once
        self.size = 0
        self.skipping = 0  # the length of a long line being skipped so far

    def push(self, chunk: bytes) -> None:
        if self.skipping:
            first = chunk.find(b"\n") + 1
            if first == 0:
                self.skipping += len(chunk)
                return
            self.emit(self.skipping + first)
            self.skipping = 0
            chunk = chunk[first:]
            if not chunk:
                return
        cut = chunk.rfind(b"\n") + 1
        if cut:
            self.pending.append(chunk[:cut] if cut < len(chunk) else chunk)
            self.emit(b"".join(self.pending) if len(self.pending) > 1 else self.pending[0])
            self.pending, self.size = [], 0
            if cut == len(chunk):
                return
            chunk = chunk[cut:]
        self.pending.append(chunk)
        self.size += len(chunk)
        long = self.long_line and self.size > self.long_line and self.may_skip is not None
        if (
            long
            and self.may_skip is not None
            and self.may_skip(b"".join(p[:16] for p in self.pending[:16])[:16])
        ):
            self.skipping, self.pending, self.size = self.size, [], 0

    def finish(self) -> None:
        if self.skipping:
            self.emit(self.skipping)
            self.skipping = 0
        if self.pending:
            self.emit(b"".join(self.pending))
            self.pending, self.size = [], 0


def _aligned(
    chunks: Iterator[bytes], long_line: int = 0, may_skip: Callable[[bytes], bool] | None = None
) -> Iterator[bytes | int]:
    """``_Aligner`` as an iterator."""
    out: list[bytes | int] = []
    aligner = _Aligner(out.append, long_line, may_skip)
    for chunk in chunks:
        aligner.push(chunk)
        yield from out
        out.clear()
    aligner.finish()
    yield from out


def _not_delimiter(head: bytes) -> bool:
    return not head.startswith(b"--")


class _Source:
    """The logical message in the file, read in bounded pieces."""

    __slots__ = ("file", "leaf_bound", "long_line", "window")

    def __init__(self, file: MessageFile, window: int, leaf_bound: int, long_line: int) -> None:
        self.file = file
        self.window = window
        self.leaf_bound = leaf_bound
        self.long_line = long_line

    def __getitem__(self, key: slice) -> bytes:
        # Only ``message`` slices the data (an encoded message/rfc822 part, read whole).
        start, stop, _ = key.indices(self.file.size)
        return self.file.read(start, stop - start)

    def read(self, start: int, length: int) -> bytes:
        return self.file.read(start, length)

    def windows(
        self,
        start: int,
        end: int,
        window: int,
        *,
        context: bool,
        may_skip: Callable[[bytes], bool] | None = None,
    ) -> Iterator[tuple[int, bytes, int]]:
        """``(base, buf, pos)``: line-aligned pieces of ``[start, end)``, ``buf`` starting at
        ``base`` and new bytes at ``buf[pos:]``; with ``context`` ``buf`` also holds the byte
        before the piece, so ``^`` matches where it would in the whole message."""
        prev = self.file.read(start - 1, 1) if context and start > 0 else b""
        base = start
        for piece in _aligned(self.file.chunks(start, end, window), self.long_line, may_skip):
            if isinstance(piece, int):  # a long line no caller's pattern can match
                base += piece
                prev = b"\n" if context else b""
                continue
            yield base - len(prev), prev + piece if prev else piece, len(prev)
            base += len(piece)
            prev = piece[-1:] if context else b""


class _UUScan:
    """``decode.uu_blocks`` in one pass over a text given in pieces: every ``begin`` line opens
    a block that the next ``end`` line (for all open blocks the same one) closes."""

    def __init__(self, limit: int, long_line: int = 0) -> None:
        self.limit = limit
        self.begins = 0
        self.open: list[tuple[str, bool, bytearray]] = []
        self.found: list[tuple[str, bytes]] = []
        self.seen = False  # whether any window held "begin" (the in-memory quick test)
        # A long line matters only as an open block's content or when it is a begin line.
        self._lines = _Aligner(self._piece, long_line, self._skippable)

    def _skippable(self, head: bytes) -> bool:
        return not self.open and not head.startswith(b"begin")

    def _piece(self, piece: bytes | int) -> None:
        if not isinstance(piece, int):
            self._scan(piece)

    def feed(self, chunk: bytes) -> None:
        self._lines.push(chunk)

    def close(self) -> list[tuple[str, bytes]]:
        self._lines.finish()
        for block in self.open:
            self._decode(block)
        self.open = []
        return self.found

    def _decode(self, block: tuple[str, bool, bytearray]) -> None:
        name, b64, content = block
        data, _ = _base64(bytes(content)) if b64 else _uudecode(bytes(content))
        self.found.append((name, data))

    def _scan(self, text: bytes) -> None:
        has_begin = b"begin" in text
        self.seen = self.seen or has_begin
        if not self.open and (not has_begin or self.begins >= self.limit):
            return
        events: list[tuple[int, int, re.Match[bytes] | None]] = []
        if has_begin and self.begins < self.limit:
            events += [(m.start(), 0, m) for m in _UU_BEGIN.finditer(text)]
        if self.open or events:
            events += [(m.start(), 1, None) for m in _UU_END.finditer(text)]
        events.sort(key=lambda e: (e[0], e[1]))
        pos = 0  # where the open blocks' content not yet appended starts
        for at, kind, match in events:
            if kind == 1:
                if not self.open:
                    continue
                for block in self.open:
                    block[2].extend(text[pos:at])
                    self._decode(block)
                self.open = []
                pos = at
                continue
            if match is None or self.begins >= self.limit:
                continue
            self.begins += 1
            for block in self.open:
                block[2].extend(text[pos : match.end()])
            pos = match.end()
            name = match.group(1).decode("utf-8", "replace")
            self.open.append((name, match.group(0).startswith(b"begin-base64"), bytearray()))
        for block in self.open:
            block[2].extend(text[pos:])
        # The blocks must be reported in begin order, as ``uu_blocks`` does; a block closes
        # only together with the blocks opened before it, so the order is already that.


class _Sink:
    """Where a streamed leaf's decoded bytes go: counted against the budget, hashed, its first
    bytes kept (all of it when held), and scanned for uuencoded files when it is text."""

    def __init__(self, room: int, hold: bool, uu: _UUScan | None) -> None:
        self.room = max(room, 0)
        self.hold = hold
        self.decided = hold
        self.kept = bytearray()
        self.size = 0
        self.over = False
        self.plain = True
        self.digest = hashlib.sha256()
        self.uu = uu

    @property
    def full(self) -> bool:
        return self.size >= self.room

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.size + len(chunk) > self.room:
            self.over = True
            chunk = chunk[: self.room - self.size]
            if not chunk:
                return
        self.size += len(chunk)
        self.digest.update(chunk)
        self.plain = self.plain and chunk.isascii() and b"\x00" not in chunk
        if self.uu is not None:
            self.uu.feed(chunk)
        if self.hold or not self.decided:
            self.kept += chunk
            if not self.decided and len(self.kept) >= SNIFF_BYTES:
                self.decided = True
                head = bytes(self.kept[:262])
                # Unpacking needs the whole content, as does the encrypted-Office test.
                self.hold = archives.archive_kind(head) is not None or head[:8] == _OLE_MAGIC
                if not self.hold:
                    del self.kept[SNIFF_BYTES:]


class _FileWalker(_Walker):
    def __init__(self, limits: WalkLimits, source: _Source) -> None:
        super().__init__(limits)
        self.source = source

    # -- structure ---------------------------------------------------------------------------

    def head(self, data: bytes, start: int, end: int, part: bool) -> tuple[int, dict[str, list[str]]]:
        if not isinstance(data, _Source):
            return super().head(data, start, end, part)
        src = data
        body = self._split_head(src, start, end, part)
        return body, _field_lines(self._lines(src, start, body))

    def _split_head(self, src: _Source, start: int, end: int, part: bool) -> int:
        # ``walk._split_head`` over the file; its first test reads past ``end`` as it does.
        first2 = src.read(start, 2)
        if first2.startswith(b"\r\n") or first2.startswith(b"\n"):
            return start + (2 if first2.startswith(b"\r\n") else 1)
        if part and not self._first_is_field(src, start, end):
            return start
        first = True
        for base, buf, pos in src.windows(start, end, _HEAD_WINDOW, context=True):
            # After the first window the byte before it may begin the blank line ("\n" + "\r\n"):
            # the match then ends where the one starting a byte earlier does.
            match = _BLANK_LINE.search(buf, pos if first else 0)
            first = False
            if match is not None:
                return base + match.end()
        return end

    def _first_is_field(self, src: _Source, start: int, end: int) -> bool:
        line = b""
        for piece in src.file.chunks(start, end, _HEAD_WINDOW):
            newline = piece.find(b"\n")
            line += piece if newline < 0 else piece[:newline]
            if newline >= 0 or not _NAME_PREFIX.match(line):
                break  # the line is whole, or its beginning already decides
        return _FIELD.match(line.rstrip(b"\r")) is not None

    def _lines(self, src: _Source, start: int, end: int) -> Iterator[bytes]:
        """``src[start:end].split(b"\\n")`` one window at a time."""
        if start >= end:
            yield b""
            return
        for base, buf, pos in src.windows(start, end, _HEAD_WINDOW, context=False):
            lines = buf[pos:].split(b"\n")
            if base + len(buf) < end:
                lines.pop()  # the empty piece after the window's last line feed
            yield from lines

    def multipart(
        self, data: bytes, body: int, end: int, boundary: str, ctx: _Ctx, child: str, signed: bool
    ) -> bool:
        if not isinstance(data, _Source):
            return super().multipart(data, body, end, boundary, ctx, child, signed)
        src = data
        delimiter = re.compile(
            rb"^--" + re.escape(boundary.encode("utf-8", "replace")) + rb"(--)?[ \t]*\r?$", re.MULTILINE
        )
        starts: list[tuple[int, int]] = []
        closed = False
        done = False
        windows = src.windows(body, end, self.source.window, context=True, may_skip=_not_delimiter)
        for base, buf, pos in windows:
            for match in delimiter.finditer(buf, pos):
                line_end = base + match.end()
                if src.read(line_end, 1) == b"\n":
                    line_end += 1
                starts.append((base + match.start(), line_end))
                if match.group(1):
                    closed = done = True
                    break
                if len(starts) > self.limits.max_parts + 1:
                    done = True
                    break
            if done:
                break
        windows.close()  # its last window would stay alive while the parts are walked
        if not starts:
            self.walk.finding("MIME_DECODE_ERROR", f"part {ctx.number or 0}: boundary never occurs")
            return False
        if not closed:
            self.walk.finding("MIME_DECODE_ERROR", f"part {ctx.number or 0}: multipart not closed")
        self.text_region(src, body, starts[0][0], ctx, f"{ctx.number}.preamble".lstrip("."))
        bounds = [*starts[1:], (end, end)] if not closed else starts[1:]
        prefix = f"{ctx.number}." if ctx.number else ""
        for index, ((_, part_start), (next_delim, _)) in enumerate(zip(starts, bounds, strict=False), 1):
            part_end = next_delim
            if part_end > part_start:
                tail = src.read(part_end - 2, 2) if part_end - 2 >= 0 else src.read(part_end - 1, 1)
                if tail[-1:] == b"\n":
                    part_end -= 2 if tail == b"\r\n" and part_end - 2 >= 0 else 1
            sub = _Ctx(f"{prefix}{index}", ctx.depth + 1, ctx.outer, signed, child, part=True)
            self.entity(data, part_start, max(part_start, part_end), sub)
            if self.walk.cut and self.parts > self.limits.max_parts:
                break
        if closed:
            self.text_region(src, starts[-1][1], end, ctx, f"{ctx.number}.epilogue".lstrip("."))
        return True

    def text_region(self, src: _Source, start: int, end: int, ctx: _Ctx, number: str) -> None:
        """``text_blocks`` over a region of the file."""
        if end - start <= self.source.leaf_bound:
            self.text_blocks(src.read(start, end - start), ctx, number)
            return
        scan = _UUScan(max(self.limits.max_parts - self.parts, 0), self.source.long_line)
        for piece in src.file.chunks(start, end, self.source.window):
            scan.feed(piece)
        self.uu_items(scan, ctx, number)

    def uu_items(self, scan: _UUScan, ctx: _Ctx, number: str) -> None:
        """The items ``text_blocks`` makes, from a finished scan."""
        found = scan.close()
        for index, (name, content) in enumerate(found, 1):
            self.parts += 1
            content = self.budget(content, number)
            self.item(content, [name], ["application/octet-stream"], f"{number}.uu{index}", ctx.outer,
                      ctx.signed, member=False, depth=0)  # fmt: skip

    # -- leaves ------------------------------------------------------------------------------

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
        if not isinstance(data, _Source):
            return super().leaf(data, body, end, fields, types, mains, encodings, ctx, span, signed)
        if end - body <= self.source.leaf_bound:
            raw = data.read(body, end - body)
            return super().leaf(raw, 0, len(raw), fields, types, mains, encodings, ctx, span, signed)
        found = self.leaf_names(fields, types, ctx)
        number = ctx.number or "1"
        for encoding in encodings or ["7bit"]:
            text = mains[0].startswith("text/") or not found
            name = encoding.strip().strip('"').lower()
            if name in ("x-uuencode", "uuencode", "x-uue", "uue"):
                # Rare, and its lines need no state across them: read whole, within the bound.
                content, repaired = transfer_decode(data.read(body, end - body), encoding)
                if repaired:
                    self.walk.finding("MIME_DECODE_ERROR", f"part {number}: malformed {encoding}")
                content = self.budget(content, number)
                self.item(content, found, mains, number, span, signed, member=False, depth=0)
                if text:
                    self.text_blocks(content, ctx, number)
                continue
            # Items do not count as parts, so the room for uuencoded files is known already.
            room = max(self.limits.max_parts - self.parts, 0)
            uu = _UUScan(room, self.source.long_line) if text else None
            sink = _Sink(self.limits.max_decoded_bytes - self.decoded, self.limits.hold_leaves, uu)
            repaired = _stream_decode(data, body, end, name, sink, self.source.window)
            if repaired:
                self.walk.finding("MIME_DECODE_ERROR", f"part {number}: malformed {encoding}")
            if sink.over:
                bound = self.limits.max_decoded_bytes
                self.walk.finding("MIME_TOO_LARGE", f"decoded content over {bound} bytes", cut=True)
                log.info("walk cut at %s: decoded-bytes bound", number)
            self.decoded += sink.size
            content = bytes(sink.kept)
            partial = len(content) < sink.size
            self.item(content, found, mains, number, span, signed, member=False, depth=0,
                      plain=sink.plain, sha256=sink.digest.hexdigest() if partial else "",
                      partial=partial)  # fmt: skip
            del content
            sink.kept = bytearray()
            if uu is not None and uu.seen:
                self.uu_items(uu, ctx, number)


def _stream_decode(src: _Source, start: int, end: int, encoding: str, sink: _Sink, window: int) -> bool:
    """Decode ``[start, end)`` of the file into ``sink``; whether it needed repair."""
    chunks = src.file.chunks(start, end, window)
    if encoding == "base64":
        repaired = False
        carry = b""
        for chunk in chunks:
            repaired = repaired or len(chunk.translate(None, _NOT_B64_TEXT)) != len(chunk)
            cleaned = carry + chunk.translate(None, _NOT_B64)
            whole = len(cleaned) - len(cleaned) % 4
            carry = cleaned[whole:]
            sink.feed(binascii.a2b_base64(cleaned[:whole]))
            if sink.over:
                return repaired
        if len(carry) == 1:
            repaired = True
        elif carry:
            sink.feed(binascii.a2b_base64(carry + b"=" * (4 - len(carry))))
        return repaired
    if encoding == "quoted-printable":
        # ``a2b_qp`` keeps no state across a line feed, so whole lines decode the same apart.
        for piece in _aligned(chunks):
            assert isinstance(piece, bytes)  # nothing is skipped without a long_line
            try:
                sink.feed(binascii.a2b_qp(piece))
            except (binascii.Error, ValueError):  # as ``transfer_decode``: kept as written
                sink.feed(piece)
            if sink.over:
                break
        return False
    for chunk in chunks:
        sink.feed(chunk)
        if sink.over:
            break
    return False


def walk_file(
    message: MessageFile,
    limits: WalkLimits | None = None,
    *,
    window: int = WINDOW,
    leaf_bound: int = LEAF_BOUND,
    long_line: int = LONG_LINE,
) -> Walk:
    """Walk a message kept in a file (the keywords for tests); never raises."""
    source = _Source(message, max(window, 1), max(leaf_bound, 0), max(long_line, 0))
    walker = _FileWalker(limits or WalkLimits(), source)
    try:
        walker.entity(source, 0, message.size, _Ctx("", 0, None, False))  # type: ignore[arg-type]
    except RecursionError:
        walker.walk.finding("MIME_TOO_DEEP", "nesting beyond the interpreter's limit", cut=True)
    except Exception as exc:  # an I/O error or a bug costs this message a refusal, never the worker
        log.exception("file walk failed")
        walker.walk.finding("MIME_DECODE_ERROR", f"walk failed: {type(exc).__name__}", cut=True)
    return walker.walk
