"""A spool data file: the message, after a short head that carries the record it was queued with.

Format (``data/<id>.eml``)::

    EWQ1 <length of the record in bytes, decimal>\\n<the record, JSON>\\n<the message, CRLF>

Why the record rides along: it makes the data file the one file whose flush a message's ``250``
waits for (``queue.commit``). The metadata file in ``incoming/`` is then written without a flush
of its own: if a power cut takes it (or leaves it empty), ``recover()`` rebuilds it from here.

- A message whose metadata is removed (delivered, or removed by an administrator) first gets
  its head's magic overwritten with ``EWQ0`` (:func:`mark_finished`, one 4-byte write), so
  that an orphan left by a crash between the two unlinks is recognised as finished and
  deleted, not delivered again.
- A data file without the magic is a message written before this format (or by hand): read
  whole, as before; recovery treats such an orphan as it always did (deleted).
- The head is never part of the message: every reader goes through :func:`message_offset`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

__all__ = ["FINISHED", "LIVE", "embedded_record", "head", "mark_finished", "message_offset", "unmark"]

LIVE = b"EWQ1 "
FINISHED = b"EWQ0 "
# The length field of a record: a record of 1000 recipients is about 100 KB.
_MAX_DIGITS = 9
_PEEK = len(LIVE) + _MAX_DIGITS + 1
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def head(record: bytes) -> bytes:
    """The bytes that go before the message in its data file."""
    return LIVE + str(len(record)).encode("ascii") + b"\n" + record + b"\n"


def _parse(peek: bytes) -> tuple[bytes, int, int] | None:
    """(magic, record start, record length) from the file's first bytes; None if it has no head."""
    magic = peek[: len(LIVE)]
    if magic not in (LIVE, FINISHED):
        return None
    end = peek.find(b"\n", len(LIVE))
    digits = peek[len(LIVE) : end]
    if end < 0 or not digits.isdigit() or len(digits) > _MAX_DIGITS:
        return None
    return magic, end + 1, int(digits)


def message_offset(fh: BinaryIO) -> int:
    """Where the message starts in the open data file ``fh`` (0 without a head); ``fh`` is left
    positioned there."""
    fh.seek(0)
    parsed = _parse(fh.read(_PEEK))
    offset = 0 if parsed is None else parsed[1] + parsed[2] + 1
    fh.seek(offset)
    return offset


def embedded_record(path: Path) -> bytes | None:
    """The record in the head of the live data file at ``path``; None if it has none, is
    finished, or its head is cut short (a file never flushed)."""
    with open(path, "rb", opener=lambda p, flags: os.open(p, flags | _NOFOLLOW)) as fh:
        parsed = _parse(fh.read(_PEEK))
        if parsed is None or parsed[0] != LIVE:
            return None
        _, start, length = parsed
        fh.seek(start)
        record = fh.read(length + 1)
    if len(record) != length + 1 or not record.endswith(b"\n"):
        return None
    return record[:-1]


def _overwrite(path: Path, magic: bytes, expected: bytes) -> bool:
    try:
        fd = os.open(path, os.O_RDWR | _NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        if os.pread(fd, len(expected), 0) != expected:
            return False  # no head (an older file), or already marked
        os.pwrite(fd, magic, 0)
        return True
    finally:
        os.close(fd)


def mark_finished(path: Path) -> bool:
    """Mark the data file at ``path`` as its message's last act; False if it has no live head.

    Not flushed: a power cut may undo it, and the message is then at worst delivered twice,
    as one whose removal the power cut undid always was."""
    return _overwrite(path, FINISHED, LIVE)


def unmark(path: Path) -> bool:
    """Undo :func:`mark_finished` (the removal it announced did not happen)."""
    return _overwrite(path, LIVE, FINISHED)
