"""The streamed steps of the file walk (``scanning.walk_file``): bytes given in pieces.

``Aligner``/``aligned`` re-cut pieces at line ends (skipping long lines no scan can match),
``UUScan`` finds uuencoded files in a text as ``decode.uu_blocks`` does over the whole,
``LeafSink`` takes a large leaf's decoded bytes (budget, SHA-256, the first bytes, the whole only
when it must) and ``stream_decode`` decodes base64, quoted-printable and the pass-through
encodings piece by piece into it. None of them reads the file or holds more than a line or a
sniffed head beyond what a held leaf must keep.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Callable, Iterator

from edgeward.scanning import archives
from edgeward.scanning.decode import _NOT_B64, _NOT_B64_TEXT, _base64, _uudecode
from edgeward.scanning.truetype import SNIFF_BYTES

__all__ = ["Aligner", "LeafSink", "UUScan", "aligned", "stream_decode"]

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_UU_BEGIN = re.compile(rb"^begin(?:-base64)? [0-7]{3,4} (.+?)\r?$", re.MULTILINE)
_UU_END = re.compile(rb"^end\r?$", re.MULTILINE)


class Aligner:
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


def aligned(
    chunks: Iterator[bytes], long_line: int = 0, may_skip: Callable[[bytes], bool] | None = None
) -> Iterator[bytes | int]:
    """``Aligner`` as an iterator."""
    out: list[bytes | int] = []
    aligner = Aligner(out.append, long_line, may_skip)
    for chunk in chunks:
        aligner.push(chunk)
        yield from out
        out.clear()
    aligner.finish()
    yield from out


class UUScan:
    """``decode.uu_blocks`` in one pass over a text given in pieces: every ``begin`` line opens
    a block that the next ``end`` line (for all open blocks the same one) closes."""

    def __init__(self, limit: int, long_line: int = 0) -> None:
        self.limit = limit
        self.begins = 0
        self.open: list[tuple[str, bool, bytearray]] = []
        self.found: list[tuple[str, bytes]] = []
        self.seen = False  # whether any window held "begin" (the in-memory quick test)
        # A long line matters only as an open block's content or when it is a begin line.
        self._lines = Aligner(self._piece, long_line, self._skippable)

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


class LeafSink:
    """Where a streamed leaf's decoded bytes go: counted against the budget, hashed, its first
    bytes kept (all of it when held), and scanned for uuencoded files when it is text."""

    def __init__(self, room: int, hold: bool, uu: UUScan | None) -> None:
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


def stream_decode(chunks: Iterator[bytes], encoding: str, sink: LeafSink) -> bool:
    """Decode a leaf's raw bytes, given in pieces, into ``sink``; whether it needed repair."""
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
        for piece in aligned(chunks):
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
