"""Small durable-file primitives of the spool: create private files, sync folders, tolerate races.

These are blocking calls; the spool runs the ones on the receive path in a worker thread.

Security: every file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600, so a
pre-planted file or symlink is never written through, and message data is private to the
gateway's user. Folders are created 0700.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeward.config.ownership import Owner, give_fd, make_private_dirs

_CREATE = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
# fdatasync flushes the data and the metadata needed to read it back (the size of a new file),
# which is all a freshly written spool file needs; it skips timestamps. Not on every platform.
_datasync = getattr(os, "fdatasync", os.fsync)


def write_new(path: Path, data: bytes, *, sync: bool, owner: Owner | None = None) -> None:
    """Create ``path`` (which must not exist) holding ``data``; flushed to disk if ``sync``.

    ``owner`` (an administrator's command running as root) gets the file before it is written,
    so it is the service's by the time any rename publishes it. On failure the partial file is
    removed before the error propagates.
    """
    _close_after(path, open_new(path, data, owner=owner), sync=sync)


def open_new(
    path: Path, head: bytes, source: Path | None = None, offset: int = 0, end: int = 0,
    *, owner: Owner | None = None,
) -> int:  # fmt: skip
    """Create ``path`` (which must not exist) holding ``head`` then, with ``source``,
    ``source[offset:end]``; return its descriptor, open and not flushed.

    The copy runs in the kernel (``copy_file_range``; by hand where the file systems or the
    kernel cannot), so a large message already in a file reaches the spool without passing
    through this process's memory. On failure the partial file is removed.
    """
    fd = os.open(path, _CREATE, 0o600)
    try:
        give_fd(fd, owner)
        write_all(fd, head)
        if source is not None:
            src = os.open(source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                _copy(src, fd, offset, end)
            finally:
                os.close(src)
    except BaseException:
        os.close(fd)
        unlink_quiet(path)
        raise
    return fd


def _close_after(path: Path, fd: int, *, sync: bool) -> None:
    try:
        if sync:
            _datasync(fd)
    except BaseException:
        os.close(fd)
        unlink_quiet(path)
        raise
    os.close(fd)


def datasync(fd: int) -> OSError | None:
    """Flush a file's data (and the size that reads it back); the error, if it failed."""
    try:
        _datasync(fd)
    except OSError as exc:
        return exc
    return None


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        # os.write may write less than asked (signals, some file systems): loop until done.
        view = view[os.write(fd, view) :]


def _copy(src: int, dst: int, offset: int, end: int) -> None:
    while offset < end:
        try:
            done = os.copy_file_range(src, dst, end - offset, offset)
        except OSError:  # not across these file systems, or not on this kernel: copy by hand
            done = 0
        if done <= 0:
            piece = os.pread(src, min(1 << 16, end - offset), offset)
            if not piece:
                raise OSError(f"short read copying a message at byte {offset}")
            write_all(dst, piece)
            done = len(piece)
        offset += done


def sync_dir(path: Path) -> None:
    """fsync a folder so the names created, renamed or removed in it survive a power loss."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quiet(path: Path) -> bool:
    """Remove ``path``; False if it was already gone (another process may have moved it)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def make_dirs(*paths: Path, owner: Owner | None = None) -> None:
    make_private_dirs(*paths, owner=owner)
