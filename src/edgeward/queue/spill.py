"""The file a large message is written to while it arrives (``smtp.data.BodySink``).

It lives in the spool's ``tmp/`` folder, so it is private (0600 in a 0700 folder, created with
``O_EXCL`` and ``O_NOFOLLOW``), on the spool's file system (the commit copies it into
``data/`` in the kernel), and a leftover from a crash is deleted by spool recovery at start.
It is not flushed to disk: nothing is acknowledged on it, the commit flushes the data file it
becomes, and a refused or abandoned message's file is removed at once.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from edgeward.config.ownership import Owner, give_fd
from edgeward.message_file import MessageFile
from edgeward.queue.files import unlink_quiet, write_all

__all__ = ["SpillFile"]

_CREATE = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class SpillFile:
    """One message's bytes, appended as the SMTP core hands them on."""

    __slots__ = ("_fd", "path", "written")

    def __init__(self, folder: Path, owner: Owner | None = None) -> None:
        self.path = folder / f"spill.{secrets.token_hex(8)}"
        self._fd: int | None = os.open(self.path, _CREATE, 0o600)
        self.written = 0
        try:
            give_fd(self._fd, owner)
        except BaseException:
            self.abort()
            raise

    def write(self, data: bytes) -> None:
        if self._fd is None:
            raise OSError(f"{self.path}: written after it was closed")
        write_all(self._fd, data)
        self.written += len(data)

    def finish(self, header: bytes) -> MessageFile:
        self._close()
        return MessageFile(self.path, header, len(header), self.written)

    def abort(self) -> None:
        self._close()
        unlink_quiet(self.path)

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
