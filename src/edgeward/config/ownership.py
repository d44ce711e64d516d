"""Who should own what the gateway writes: files made by an administrator are handed to the service.

The gateway runs as ``server.user`` and owns its data folders (``serve`` hands them over at
start). Administrators run ``edgeward queue``, ``quarantine``, ``spam learn`` and ``user`` as
root while it runs; a file such a command creates (a rewritten queue record, a released
message, a new database, a log) would be root's, mode 0600, and the gateway could no longer
read it. So every writer below the data folder asks :func:`service_owner` once for the owner
of the folder it writes in, and gives each file it creates to that owner before the file
becomes visible (``fchown`` on the open descriptor, then the rename that publishes it), so the
gateway never sees a file it cannot read.

Not running as root, or in a folder root owns, there is nobody to hand files to and every
function here does nothing: an unprivileged process can only create files it owns itself.

Security: ownership only ever goes from root to the folder's (unprivileged) owner, never the
other way; symlinks are never followed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Owner", "give", "give_fd", "hand_over", "make_private_dirs", "service_owner"]


@dataclass(frozen=True, slots=True)
class Owner:
    uid: int
    gid: int


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def service_owner(folder: Path) -> Owner | None:
    """The owner to give new files under ``folder`` to, or None when there is nothing to do.

    The nearest existing folder at or above ``folder`` decides, so a folder about to be
    created inherits the owner of the data folder it is made in.
    """
    if not _is_root():
        return None
    path = Path(folder)
    while True:
        try:
            st = path.stat()
            break
        except FileNotFoundError:
            if path.parent == path:
                return None
            path = path.parent
    return None if st.st_uid == 0 else Owner(st.st_uid, st.st_gid)


def give(path: Path, owner: Owner | None) -> None:
    """Hand ``path`` (not a symlink's target) to ``owner``; nothing if ``owner`` is None."""
    if owner is not None:
        os.chown(path, owner.uid, owner.gid, follow_symlinks=False)


def give_fd(fd: int, owner: Owner | None) -> None:
    """Hand an open file to ``owner`` before it is renamed where the gateway looks."""
    if owner is not None:
        os.fchown(fd, owner.uid, owner.gid)


def hand_over(path: Path) -> None:
    """As root, give ``path`` to the owner of its folder if root owns it and the folder does not.

    For files created by code that does not go through :func:`give_fd` (SQLite, a log writer)
    and for repairing a file an earlier release left owned by root.
    """
    if not _is_root():
        return
    owner = service_owner(path.parent)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if owner is not None and st.st_uid == 0:
        give(path, owner)


def make_private_dirs(*paths: Path, owner: Owner | None = None) -> None:
    """Create folders 0700 (with their parents); the ones created here are given to ``owner``."""
    for path in paths:
        missing: list[Path] = []
        probe = Path(path)
        while not probe.exists() and probe.parent != probe:
            missing.append(probe)
            probe = probe.parent
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for created in reversed(missing):
            give(created, owner)
