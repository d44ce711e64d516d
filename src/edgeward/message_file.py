"""A received message kept in a file instead of in memory.

A message larger than the session's inline budget (``smtp.settings.SPILL_ABOVE``) is written
to a private file in the spool's ``tmp/`` folder while it arrives (``smtp.data``), so the
receiving process never holds it whole. The end-of-data agents and transforms then see it as
a ``MessageFile``: its header block in memory, the rest read from the file in bounded pieces.

The logical message is ``header + file[body_offset:]``: a transform that changes only the
header block (removing forged internal fields before the agents) makes a new ``MessageFile``
with another header and the same file, so the body is never copied. Every offset taken or
returned here is an offset into the logical message.

Security: the file is created 0600 with ``O_EXCL`` and ``O_NOFOLLOW`` in the spool's private
``tmp/`` folder, and removed once the message is committed or refused (``discard``); a file
left behind by a crash is a ``tmp/`` leftover that spool recovery deletes at start.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CHUNK", "TEXT_WINDOW", "MessageFile", "size_of", "text_of"]

#: The piece a reader gets at a time: large enough that per-piece Python work is negligible,
#: small enough that a handful of them in flight stays far below the memory goals.
CHUNK = 64 * 1024

#: What the text readers (the content classifier's parse, site learning) take of a message kept
#: in a file: its first 64 KiB. Spam and phishing say what they are near the top; SpamAssassin
#: likewise reads only the first 50 KB of each body part (``body_part_scan_size``). The
#: attachment walk, the anti-virus engines and DKIM read the whole file, in pieces.
TEXT_WINDOW = 64 * 1024


class MessageFile:
    """``header + file[body_offset:]``: a message whose body is in ``path``."""

    __slots__ = ("body_offset", "file_size", "header", "path")

    def __init__(self, path: Path, header: bytes, body_offset: int, file_size: int) -> None:
        self.path = path
        self.header = header  # the header block, up to and including the empty line (if any)
        self.body_offset = body_offset  # where the body starts in the file
        self.file_size = file_size

    @property
    def size(self) -> int:
        return len(self.header) + self.file_size - self.body_offset

    def with_header(self, header: bytes) -> MessageFile:
        """The same body under another header block (a header-only transform's result)."""
        return MessageFile(self.path, header, self.body_offset, self.file_size)

    def read(self, start: int, length: int) -> bytes:
        """``length`` bytes of the logical message from ``start`` (fewer at its end)."""
        end = min(self.size, start + max(0, length))
        if start >= end:
            return b""
        return b"".join(self.chunks(start, end, max(CHUNK, end - start)))

    def chunks(self, start: int = 0, end: int | None = None, chunk: int = CHUNK) -> Iterator[bytes]:
        """The logical message from ``start`` to ``end`` in pieces of at most ``chunk`` bytes."""
        stop = self.size if end is None else min(end, self.size)
        hlen = len(self.header)
        pos = max(0, start)
        while pos < stop and pos < hlen:
            piece = self.header[pos : min(stop, hlen, pos + chunk)]
            yield piece
            pos += len(piece)
        if pos >= stop:
            return
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            offset = self.body_offset + pos - hlen
            last = self.body_offset + stop - hlen
            while offset < last:
                piece = os.pread(fd, min(chunk, last - offset), offset)
                if not piece:  # the file shrank under us: nothing of ours does that
                    raise OSError(f"{self.path}: short read at {offset}")
                yield piece
                offset += len(piece)
        finally:
            os.close(fd)

    def body_chunks(self, chunk: int = CHUNK) -> Iterator[bytes]:
        """The body (everything after the header block) in pieces."""
        return self.chunks(len(self.header), None, chunk)

    def materialize(self) -> bytes:
        """The whole message in memory, for the few uses that need it at once (a transform that
        rewrites the body); every such caller says why next to the call."""
        return self.read(0, self.size)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __repr__(self) -> str:
        return f"MessageFile({self.path.name}, {self.size} bytes, header {len(self.header)})"


def size_of(message: bytes | MessageFile) -> int:
    return message.size if isinstance(message, MessageFile) else len(message)


def text_of(data: bytes, spooled: MessageFile | None) -> bytes:
    """What a text reader reads of an EOD message: all of ``data``, or the window of a file."""
    return data if spooled is None else spooled.read(0, TEXT_WINDOW)
