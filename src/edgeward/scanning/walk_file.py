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
  by a one-pass scan of the decoded stream (``walk_stream.UUScan``) that gives ``decode.uu_blocks``'s answer.
* Budget: ``max_decoded_bytes`` counts the decoded size, cut at the bound as in memory.

Differences from ``walk_message`` (memory, never results): a message/rfc822 part with a
transfer encoding, a uuencoded leaf, a header line and a quoted-printable line longer than a
window, and a long line that starts like a delimiter or a uuencoded file are read whole.

Security: nothing here writes decoded content to disk, runs a program or follows a name from
the mail; ``walk_file`` never raises on any input (an I/O error or a bug marks the walk cut
with ``MIME_DECODE_ERROR``, as ``walk_message`` does for a bug).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

from edgeward.message_file import MessageFile
from edgeward.scanning.decode import transfer_decode
from edgeward.scanning.walk import (
    _BLANK_LINE,
    _FIELD,
    Span,
    Walk,
    WalkLimits,
    _Ctx,
    _field_lines,
    _Walker,
    delimiter_lines,
)
from edgeward.scanning.walk_stream import LeafSink, UUScan, aligned, stream_decode

__all__ = ["LEAF_BOUND", "LONG_LINE", "WINDOW", "walk_file"]

log = logging.getLogger("edgeward.scanning")

#: The piece of the file a structural regex sees at once.
WINDOW = 256 * 1024
#: A leaf up to this raw size is read whole and handled exactly as in memory.
LEAF_BOUND = 256 * 1024
#: A line longer than this is skipped by the delimiter and uuencode scans unless it starts the
#: way their lines do (``walk_stream.Aligner``).
LONG_LINE = 1024 * 1024
_HEAD_WINDOW = 16 * 1024  # header blocks are small: read them in small pieces
_NAME_PREFIX = re.compile(rb"[!-9;-~]*[ \t]*\Z")  # a first line that may still become a field


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
        for piece in aligned(self.file.chunks(start, end, window), self.long_line, may_skip):
            if isinstance(piece, int):  # a long line no caller's pattern can match
                base += piece
                prev = b"\n" if context else b""
                continue
            yield base - len(prev), prev + piece if prev else piece, len(prev)
            base += len(piece)
            prev = piece[-1:] if context else b""


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
        needle = boundary.encode("utf-8", "replace")
        starts: list[tuple[int, int]] = []
        closed = False
        done = False
        windows = src.windows(body, end, self.source.window, context=True, may_skip=_not_delimiter)
        for base, buf, pos in windows:
            for start, end_in_buf, closing in delimiter_lines(buf, needle, pos, len(buf)):
                line_end = base + end_in_buf
                if src.read(line_end, 1) == b"\n":
                    line_end += 1
                starts.append((base + start, line_end))
                if closing:
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
        scan = UUScan(max(self.limits.max_parts - self.parts, 0), self.source.long_line)
        for piece in src.file.chunks(start, end, self.source.window):
            scan.feed(piece)
        self.uu_items(scan, ctx, number)

    def uu_items(self, scan: UUScan, ctx: _Ctx, number: str) -> None:
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
            uu = UUScan(room, self.source.long_line) if text else None
            sink = LeafSink(self.limits.max_decoded_bytes - self.decoded, self.limits.hold_leaves, uu)
            repaired = stream_decode(data.file.chunks(body, end, self.source.window), name, sink)
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
