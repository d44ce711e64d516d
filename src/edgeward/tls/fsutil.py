"""Crash-safe, least-privilege file writes for the certificate store.

Owns: creating private folders, atomic writes with an exact mode, and the store lock.

Security: a private key must never exist on disk with a mode wider than 0600, not even for the
instant between a write and a ``chmod``. Files are therefore created with ``os.open(...,
O_CREAT | O_EXCL | O_NOFOLLOW, mode)`` under a temporary name, written, fsync'd and renamed
over the target, then the folder is fsync'd so the rename survives a power cut. ``O_EXCL`` and
``O_NOFOLLOW`` stop a planted file or symlink at the temporary name from redirecting the write.
Folders are 0700 so that not even the names of keys are visible to other users.

Run as root (``edgeward cert ...`` beside a running gateway), every file and folder created
here goes to the owner of the folder it is made in (``config.ownership``), before the rename
that publishes it: a root-owned 0600 index or key would stop the gateway's next reload.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from edgeward.config.ownership import give, give_fd, service_owner

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if needed and make sure it is a folder with mode 0700.

    An existing folder with a wider mode is tightened: it only ever holds store files, and
    leaving it readable would expose the key names to other users.
    """
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    owner = service_owner(probe)
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    for made in reversed(missing):
        give(made, owner)
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(str(path))
    if stat.S_IMODE(st.st_mode) != PRIVATE_DIR_MODE:
        # mkdir's mode is filtered by the umask; set it exactly (the folder holds no secret yet
        # when it was just created, and tightening an existing one only removes access).
        os.chmod(path, PRIVATE_DIR_MODE)


def atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    """Replace ``path`` with ``data`` atomically; the file never exists with a mode wider than ``mode``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    owner = service_owner(path.parent)
    fd = os.open(tmp, flags, mode)
    try:
        give_fd(fd, owner)
        with os.fdopen(fd, "wb") as handle:
            # The umask may have removed bits from `mode` (never added any); make it exact
            # before a single byte is written.
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries so that renames and unlinks in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_file(path: Path) -> None:
    """Delete a file if it exists (removal is idempotent so an interrupted removal can be redone)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600) for the duration of the block.

    The gateway and the ``cert`` commands may change the store at the same time (automatic
    renewal while an operator imports); the lock makes each change read-modify-write safe.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    try:
        if os.fstat(fd).st_uid == 0:
            give_fd(fd, service_owner(path.parent))
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
