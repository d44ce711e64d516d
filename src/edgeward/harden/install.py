"""``edgeward install-service``: the Debian layout and the hardened systemd unit, as a plan.

The installation is computed first as a list of :class:`Action` (a system user, folders with
owner and mode, the unit, a first configuration) and then carried out, so ``--dry-run`` prints
exactly what a real run does. ``--root DIR`` puts every path under DIR and creates the user in
DIR's ``/etc/passwd`` (``useradd --prefix``), so the layout can be built in a scratch tree.

Layout (what a Debian administrator expects):

- ``/etc/edgeward`` root:edgeward 0750, the configuration root:edgeward 0640: the service reads
  it and cannot change it;
- ``/var/lib/edgeward`` (``server.data_dir``: state, certificates), ``/var/spool/edgeward``
  (the queue and quarantine, reached from the data folder through symlinks because the gateway
  keeps them below ``data_dir``) and ``/var/log/edgeward``, all edgeward:edgeward 0750;
- ``/etc/systemd/system/edgeward.service`` root 0644, ``ExecStart`` pointing at this
  installation's ``edgeward`` executable.

An existing configuration or unit is never overwritten; a unit that differs is reported.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["Action", "Layout", "plan", "run", "unit_text"]

UNIT_NAME = "edgeward.service"
USER = "edgeward"


def unit_text(executable: str | None = None) -> str:
    """The shipped unit, with ``ExecStart`` naming ``executable`` (default: this installation's)."""
    text = resources.files("edgeward.data").joinpath(UNIT_NAME).read_text(encoding="utf-8")
    exe = executable or _own_executable()
    return text.replace("ExecStart=/usr/bin/edgeward ", f"ExecStart={exe} ")


def _own_executable() -> str:
    beside = Path(sys.executable).parent / "edgeward"
    if beside.exists():
        return str(beside)
    return shutil.which("edgeward") or "/usr/bin/edgeward"


@dataclass(frozen=True)
class Layout:
    """The Debian paths, all below ``root`` (``/`` on a real host)."""

    root: Path = Path("/")

    def at(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    @property
    def etc(self) -> Path:
        return self.at("/etc/edgeward")

    @property
    def config(self) -> Path:
        return self.etc / "edgeward.toml"

    @property
    def lib(self) -> Path:
        return self.at("/var/lib/edgeward")

    @property
    def spool(self) -> Path:
        return self.at("/var/spool/edgeward")

    @property
    def log(self) -> Path:
        return self.at("/var/log/edgeward")

    @property
    def unit(self) -> Path:
        return self.at("/etc/systemd/system") / UNIT_NAME


@dataclass(frozen=True)
class Action:
    """One step: ``kind`` is user, dir, symlink or file; ``owner`` is 'user:group'."""

    kind: str
    path: Path
    mode: int = 0
    owner: str = "root:root"
    content: str = ""
    target: Path | None = None

    def describe(self) -> str:
        if self.kind == "user":
            return f"create system user {USER} (no home, shell /usr/sbin/nologin) in {self.path}"
        if self.kind == "symlink":
            return f"symlink {self.path} -> {self.target}"
        what = "folder" if self.kind == "dir" else "file"
        return f"{what} {self.path} {self.owner} {self.mode:04o}"


def _config_text(layout: Layout, hostname: str) -> str:
    from edgeward.cli.init import render

    text = render(
        hostname=hostname, listen=["0.0.0.0:25"], accept_domains=[hostname.split(".", 1)[-1]],
        relay_from=[], smart_host=None,
    )  # fmt: skip
    text = text.replace('data_dir = "."  ', 'data_dir = "/var/lib/edgeward"')
    return text.replace('dir = "log"', 'dir = "/var/log/edgeward"')


def plan(layout: Layout, *, hostname: str, executable: str | None = None) -> list[Action]:
    """Every step needed, skipping what is already in place."""
    out: list[Action] = []
    if not _has_user(layout.root):
        out.append(Action("user", layout.at("/etc/passwd")))
    svc = f"{USER}:{USER}"
    folders = [
        (layout.etc, f"root:{USER}"), (layout.lib, svc), (layout.spool, svc), (layout.log, svc),
        (layout.spool / "queue", svc), (layout.spool / "quarantine", svc),
    ]  # fmt: skip
    out += [Action("dir", p, 0o750, o) for p, o in folders if not _in_place(layout.root, p, 0o750, o)]
    for name in ("queue", "quarantine"):
        link = layout.lib / name
        if not link.exists() and not link.is_symlink():
            # The link's target is the installed path, not the scratch root's.
            out.append(Action("symlink", link, target=Path("/var/spool/edgeward") / name))
    if not layout.config.exists():
        out.append(Action("file", layout.config, 0o640, f"root:{USER}", _config_text(layout, hostname)))
    unit = unit_text(executable)
    if not layout.unit.exists():
        if not layout.unit.parent.is_dir():
            out.append(Action("dir", layout.unit.parent, 0o755))
        out.append(Action("file", layout.unit, 0o644, "root:root", unit))
    return out


def unit_differs(layout: Layout, executable: str | None = None) -> bool:
    """True when an installed unit is not the one this version ships."""
    return layout.unit.exists() and layout.unit.read_text(encoding="utf-8") != unit_text(executable)


def _has_user(root: Path) -> bool:
    return _lookup(root, USER) is not None


def _lookup(root: Path, name: str, db: str = "passwd") -> tuple[int, int] | None:
    """(id, gid) of ``name`` in ``root``'s /etc/passwd or /etc/group (gid is 0 for groups)."""
    if root == Path("/") and db == "passwd":
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            return None
        return pw.pw_uid, pw.pw_gid
    try:
        lines = (root / "etc" / db).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == name:
            return int(fields[2]), int(fields[3]) if db == "passwd" else 0
    return None


def _in_place(root: Path, path: Path, mode: int, owner: str) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    return (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (*_ids(root, owner), mode)


def _ids(root: Path, owner: str) -> tuple[int, int]:
    user, group = owner.split(":")
    uid = 0 if user == "root" else (_lookup(root, user) or (-1, -1))[0]
    gid = 0 if group == "root" else (_lookup(root, group, "group") or (-1, -1))[0]
    return uid, gid


def run(actions: list[Action], layout: Layout) -> None:
    """Carry out ``actions`` in order (as root)."""
    for action in actions:
        if action.kind == "user":
            cmd = [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
            ]
            if layout.root != Path("/"):
                cmd += ["--prefix", str(layout.root)]
            subprocess.run([*cmd, USER], check=True, capture_output=True, text=True)
            continue
        if action.kind == "symlink":
            assert action.target is not None
            action.path.symlink_to(action.target)
            continue
        if action.kind == "dir":
            action.path.mkdir(parents=True, exist_ok=True)
        else:
            fd = os.open(action.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(action.content)
        uid, gid = _ids(layout.root, action.owner)
        os.chown(action.path, uid, gid, follow_symlinks=False)
        os.chmod(action.path, action.mode)
