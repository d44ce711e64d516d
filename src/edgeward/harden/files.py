"""Owner and mode changes of ``harden apply`` and ``rollback``, made without following a symlink.

Apply runs as root and changes files in folders the service user owns (the keys, the state,
the logs). Had it used plain ``chown(path)``, a compromised gateway could swap a folder on the
way for a symlink to ``/etc`` between the plan and the change and be handed ``/etc/shadow``.
So every change goes through :func:`change`:

- the path is opened one component at a time from ``/``, each with ``O_NOFOLLOW``: a symlink
  anywhere on it makes the change fail instead of being followed;
- the last component is opened ``O_PATH | O_NOFOLLOW``, and its device and inode must be the
  ones the plan saw; a symlink there, or another file, is refused;
- a regular file with more than one link is refused (a hard link to a file elsewhere would
  carry the change there; ``fs.protected_hardlinks``, which the templates set, stops such links
  being made, this covers hosts without it);
- owner and mode are then changed through ``/proc/self/fd/N``, which names exactly the opened
  object.

Paths are absolute and symlink-free when planned: :func:`edgeward.harden.filerules.trusted_path`
resolves the links root owns (the Debian layout's ``/var/lib/edgeward/queue``), which the
service user cannot forge, and gives up on a path with anyone else's link on it.

``chown`` clears set-id bits of a regular file, so the mode is set again after it: a change
leaves exactly the owner and mode asked for.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

__all__ = ["Identity", "NotChanged", "change", "identity"]


class NotChanged(OSError):
    """The path is not the object the plan saw, or reaching it would follow a symlink."""


@dataclass(frozen=True)
class Identity:
    """What a file was when planned: which object, its owner and mode."""

    dev: int
    ino: int
    uid: int
    gid: int
    mode: int


def identity(path: str) -> Identity:
    st = os.lstat(path)
    return Identity(st.st_dev, st.st_ino, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))


def _open_parent(path: str) -> int:
    parts = [p for p in path.split("/") if p]
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except OSError as exc:
        os.close(fd)
        why = f"{path}: a folder on the way is a symlink or gone ({exc.strerror})"
        raise NotChanged(exc.errno, why) from None
    return fd


def change(
    path: str, expect: Identity, *, uid: int | None = None, gid: int | None = None, mode: int | None = None
) -> None:
    """Set the owner and/or mode of ``path`` if it is still the object ``expect`` describes."""
    if not os.path.isabs(path):
        raise NotChanged(0, f"{path}: not an absolute path")
    parent = _open_parent(path)
    try:
        fd = os.open(os.path.basename(path), os.O_PATH | os.O_NOFOLLOW, dir_fd=parent)
    except OSError as exc:
        raise NotChanged(exc.errno, f"{path}: {exc.strerror}") from None
    finally:
        os.close(parent)
    try:
        st = os.fstat(fd)
        if stat.S_ISLNK(st.st_mode):
            raise NotChanged(0, f"{path}: is a symlink now, not followed")
        if (st.st_dev, st.st_ino) != (expect.dev, expect.ino):
            raise NotChanged(0, f"{path}: replaced by another file since it was planned")
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            raise NotChanged(0, f"{path}: has {st.st_nlink} hard links, not changed")
        target = f"/proc/self/fd/{fd}"
        if uid is not None or gid is not None:
            new_uid, new_gid = uid if uid is not None else -1, gid if gid is not None else -1
            if (new_uid, new_gid) != (st.st_uid, st.st_gid):
                os.chown(target, new_uid, new_gid)
        want = stat.S_IMODE(st.st_mode) if mode is None else mode
        if stat.S_IMODE(os.fstat(fd).st_mode) != want:
            os.chmod(target, want)
    finally:
        os.close(fd)
