"""Giving up root after the listening sockets are bound.

Postfix's model: only the step that needs privilege (binding port 25) runs as root; the
network-facing process then runs as an unprivileged user and cannot get root back.

Security: after switching, the process checks that it can no longer regain root, and the
gateway refuses to serve as root at all (``PrivilegeError``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import grp
import os
import pwd
import sys
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


_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def drop_capabilities() -> None:
    """Give up every capability once the sockets are bound (started unprivileged by systemd).

    The unit grants ``CAP_NET_BIND_SERVICE`` as an ambient capability so the service user can
    bind port 25; kept, it would let the SMTP-facing process (and the delivery process it
    starts) bind any other low port. Clearing the ambient set and then all three sets leaves
    nothing to inherit or regain. A no-op where nothing is held or the calls do not exist.
    """
    if not sys.platform.startswith("linux") or os.geteuid() == 0 or not _holds_capabilities():
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise PrivilegeError(f"could not drop capabilities: {os.strerror(ctypes.get_errno())}")
    if _holds_capabilities():  # pragma: no cover - only on a broken system
        raise PrivilegeError("capabilities still held after dropping them")


def _holds_capabilities() -> bool:
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return False
    sets = ("CapEff:", "CapPrm:", "CapAmb:")
    return any(int(line.split()[1], 16) for line in status.splitlines() if line.startswith(sets))


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
