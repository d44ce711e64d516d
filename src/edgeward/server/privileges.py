"""Giving up root after the listening sockets are bound.

Postfix's model: only the step that needs privilege (binding port 25) runs as root; the
network-facing process then runs as an unprivileged user and cannot get root back.

Security: after switching, the process checks that it can no longer regain root, and the
gateway refuses to serve as root at all (``PrivilegeError``).
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from edgeward.errors import PrivilegeError


def drop_privileges(
    user: str, group: str = "", own: tuple[Path, ...] = (), readable: tuple[Path, ...] = ()
) -> None:
    """Switch to ``user`` (and ``group``) if running as root.

    ``own`` folders are handed to the user first; ``readable`` files (the configuration, read
    again on SIGHUP) get the service group and stay owned, and writable, by root only.
    """
    if os.geteuid() != 0:
        return
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(
            f"started as root, but the user {user!r} to run as does not exist; "
            f"create it (useradd --system --no-create-home {user}) or set server.user"
        ) from None
    if pw.pw_uid == 0:
        raise PrivilegeError("server.user must not be root: the gateway does not serve mail as root")
    gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    for folder in own:
        _chown_tree(folder, pw.pw_uid, gid)
    for path in readable:
        os.chown(path, -1, gid)
        os.chmod(path, (path.stat().st_mode & 0o7700) | 0o040)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(pw.pw_uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:  # pragma: no cover - only on a broken system
        raise PrivilegeError("could regain root after dropping privileges")
    os.environ["HOME"] = pw.pw_dir
    _check_interpreter(user)


def _check_interpreter(user: str) -> None:
    # Modules are imported lazily at run time (thread pools, codecs); an interpreter installed
    # where the service user cannot read would fail on the first message instead of now.
    stdlib = Path(os.__file__).parent
    if not os.access(stdlib, os.R_OK | os.X_OK):
        raise PrivilegeError(
            f"the Python installation ({stdlib}) is not readable by {user!r}; "
            "install Edgeward with a Python the service user can read"
        )


def refuse_root() -> None:
    if os.geteuid() == 0:
        raise PrivilegeError("refusing to serve mail as root")


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    if not root.exists():
        return
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
