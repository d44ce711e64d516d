"""``harden apply`` and ``harden rollback``: enforce a template's host parts, and undo exactly that.

:func:`plan` reads the host and computes the change (the nftables table, kernel settings, the
sysctl drop-in, file modes and owners, services to stop, and the shipped unit over a locally
changed one: a missing unit is install-service's, which makes the user and folders it names);
:func:`apply` first writes a rollback point holding the previous state of precisely those items,
then changes them.
:func:`rollback` puts every recorded item back: the old table text (or no table), the old
values, the old drop-in (or none), the old modes, uids and gids, the old service states.
Files are changed through :mod:`edgeward.harden.files`, which never follows a symlink and
refuses a file that is no longer the one planned (the point records device and inode); what
it refuses is reported, not changed. As with SCW, a rollback covers
what apply changed and nothing else; a change made by hand in between is not undone.

``root`` redirects the files apply writes (``/etc/sysctl.d``) into a scratch tree. Then only
``net.*`` settings are changed live: they belong to the network namespace the command runs
in, so a test in its own namespace changes nothing of the host. The other kernel settings
(``kernel.*``) are host-wide and with ``root`` go into the drop-in file only.

Rollback points are JSON files in ``<state>/harden/`` (0600, the service user never writes
them: they are only read as root by rollback).
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeward.config.schema import Config
from edgeward.harden import nft
from edgeward.harden.filerules import file_targets, owner_text, service_ids, wanted_owner
from edgeward.harden.files import Identity, NotChanged, change, identity
from edgeward.harden.host import running_units, sysctl_path
from edgeward.harden.install import Layout, unit_text
from edgeward.harden.template import RoleTemplate
from edgeward.paths import data_paths

__all__ = ["Plan", "apply", "history", "plan", "points_dir", "rollback"]

DROPIN = "etc/sysctl.d/60-edgeward.conf"
COVERS = (
    "rollback covers only what apply changed (the edgeward table, the kernel settings, modes, owners,"
    " services and the unit it listed), nothing else"
)


@dataclass
class Plan:
    template: str
    root: str
    table_before: str | None
    table_after: str
    sysctls: dict[str, tuple[str, str]] = field(default_factory=dict)  # key: (before, after)
    host_wide_file_only: list[str] = field(default_factory=list)
    dropin_before: str | None = None
    dropin_after: str = ""
    modes: dict[str, tuple[int, int]] = field(default_factory=dict)  # path: (before, after)
    owners: dict[str, tuple[int, int]] = field(default_factory=dict)  # path: (uid, gid) after
    seen: dict[str, Identity] = field(default_factory=dict)  # path: as planned, for modes and owners
    services: list[str] = field(default_factory=list)
    unit_before: str | None = None  # an installed unit that differs from the shipped one
    unit_after: str = ""
    notes: list[str] = field(default_factory=list)
    not_changed: list[str] = field(default_factory=list)  # filled by apply: files it refused to touch

    @property
    def dropin_path(self) -> Path:
        return Path(self.root) / DROPIN

    def empty(self) -> bool:
        return (
            self.table_before == self.table_after and not self.sysctls and not self.modes
            and not self.owners and not self.services and self.dropin_before == self.dropin_after
            and self.unit_before is None
        )  # fmt: skip

    def diff(self) -> list[str]:
        out = list(
            difflib.unified_diff(
                (self.table_before or "").splitlines(), self.table_after.splitlines(),
                "nft table inet edgeward (now)", "nft table inet edgeward (template)", lineterm="",
            )
        )  # fmt: skip
        out += difflib.unified_diff(
            (self.dropin_before or "").splitlines(), self.dropin_after.splitlines(),
            f"{self.dropin_path} (now)", f"{self.dropin_path} (template)", lineterm="",
        )  # fmt: skip
        out += [f"sysctl {k}: {a} -> {b}" for k, (a, b) in self.sysctls.items()]
        out += [f"sysctl {k}: in the drop-in only (host-wide, not changed live with --root)"
                for k in self.host_wide_file_only]  # fmt: skip
        out += [f"mode {p}: {a:04o} -> {b:04o}" for p, (a, b) in self.modes.items()]
        out += [f"owner {p}: {owner_text(self.seen[p].uid, self.seen[p].gid)} -> {owner_text(u, g)}"
                for p, (u, g) in self.owners.items()]  # fmt: skip
        out += [f"service {u}: stop and disable" for u in self.services]
        if self.unit_before is not None:
            unit = str(Layout(Path(self.root)).unit)
            out += difflib.unified_diff(self.unit_before.splitlines(), self.unit_after.splitlines(),
                                        f"{unit} (now)", f"{unit} (shipped)", lineterm="")  # fmt: skip
        return out


def _read_sysctl(key: str) -> str | None:
    try:
        return " ".join(sysctl_path(key).read_text(encoding="ascii").split())
    except OSError:
        return None


def plan(template: RoleTemplate, config: Config, config_path: Path, root: Path = Path("/")) -> Plan:
    p = Plan(template.name, str(root), nft.current_table(), nft.render_table(template))
    scratch = root != Path("/")
    for key, want in template.sysctls.items():
        if scratch and not key.startswith("net."):
            p.host_wide_file_only.append(key)
            continue
        have = _read_sysctl(key)
        if have is None:
            p.notes.append(f"sysctl {key}: not present in this kernel, left out")
        elif have != want:
            p.sysctls[key] = (have, want)
    lines = [f"# Written by edgeward harden apply, template {template.name}; rollback restores the old file"]
    lines += [f"{k} = {v}" for k, v in template.sysctls.items()]
    p.dropin_after = "\n".join(lines) + "\n"
    try:
        p.dropin_before = p.dropin_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        p.dropin_before = None
    service = service_ids(config)
    for target in file_targets(template, config, config_path):
        path, max_mode, owner = target.path, target.max_mode, target.owner
        if not target.trusted:
            p.notes.append(f"{path}: another user's symlink is on the way, left alone")
            continue
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            p.notes.append(f"{path}: a symlink, not followed")
            continue
        seen = identity(str(path))
        if seen.mode & ~max_mode:
            p.modes[str(path)] = (seen.mode, seen.mode & max_mode)
        uid, gid = wanted_owner(owner, service)
        owned = (seen.uid if uid is None else uid, seen.gid if gid is None else gid)
        if owned != (seen.uid, seen.gid):
            p.owners[str(path)] = owned
        if str(path) in p.modes or str(path) in p.owners:
            p.seen[str(path)] = seen
    unit = Layout(root).unit
    try:
        installed = unit.read_text(encoding="utf-8")
    except FileNotFoundError:
        # The unit comes with the layout it names (user, folders), so install-service owns it.
        p.notes.append(f"{unit} is not installed: run 'edgeward install-service'")
    except OSError as exc:
        p.notes.append(f"{unit}: {exc.strerror}, left alone")
    else:
        # A locally changed unit (EW-SVC-003) gets the shipped one back, for the executable it names.
        exec_line = next((x for x in installed.splitlines() if x.startswith("ExecStart=")), "")
        shipped = unit_text(exec_line.removeprefix("ExecStart=").split(" ", 1)[0] or None)
        if installed != shipped:
            p.unit_before, p.unit_after = installed, shipped
    units = running_units()
    if units is None:
        p.notes.append("services: systemd is not running here, none stopped")
    else:
        import fnmatch

        p.services = [u for u in units if any(fnmatch.fnmatch(u, pat) for pat in template.services_disable)]
    return p


def points_dir(config: Config) -> Path:
    return data_paths(config)["state"] / "harden"


def _service_state(unit: str) -> dict[str, str]:
    def ask(verb: str) -> str:
        done = subprocess.run(["systemctl", verb, unit], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {"enabled": ask("is-enabled"), "active": ask("is-active")}


def apply(p: Plan, config: Config) -> Path:
    """Record the rollback point, then change the host; returns the point's path."""
    folder = points_dir(config)
    # Folders made here are 0700 all the way up, like the gateway's own (state/ may not exist yet).
    missing = [p for p in (folder.parent, folder) if not p.exists()]
    for created in missing:
        created.mkdir(mode=0o700)
    point_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}"
    point = {
        "id": point_id, "created": time.time(), "template": p.template, "root": p.root,
        "table": p.table_before, "sysctls": {k: a for k, (a, _) in p.sysctls.items()},
        "dropin": p.dropin_before, "dropin_written": p.dropin_before != p.dropin_after,
        "modes": {k: a for k, (a, _) in p.modes.items()},
        "owners": {k: [p.seen[k].uid, p.seen[k].gid] for k in p.owners},
        "files": {k: [v.dev, v.ino] for k, v in p.seen.items()},
        "services": {u: _service_state(u) for u in p.services},
        "unit": p.unit_before,
    }  # fmt: skip
    path = folder / f"{point_id}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(point, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    if p.table_before != p.table_after:
        nft.load_table(p.table_after)
    for key, (_, want) in p.sysctls.items():
        sysctl_path(key).write_text(want + "\n", encoding="ascii")
    if p.dropin_before != p.dropin_after:
        p.dropin_path.parent.mkdir(parents=True, exist_ok=True)
        p.dropin_path.write_text(p.dropin_after, encoding="utf-8")
        p.dropin_path.chmod(0o644)
    for file, seen in p.seen.items():
        uid, gid = p.owners.get(file, (None, None))
        try:
            change(file, seen, uid=uid, gid=gid, mode=p.modes[file][1] if file in p.modes else None)
        except NotChanged as exc:
            p.not_changed.append(str(exc.strerror))
    for unit in p.services:
        subprocess.run(["systemctl", "disable", "--now", unit], capture_output=True, check=False)
    if p.unit_before is not None:
        _write_unit(Path(p.root), p.unit_after)
    return path


def _write_unit(root: Path, text: str) -> None:
    """Replace the unit file (root 0644, as install-service writes it) and tell systemd."""
    path = Layout(root).unit
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    os.replace(tmp, path)
    if root == Path("/") and shutil.which("systemctl") is not None and running_units() is not None:
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True, check=False)


def history(config: Config) -> list[dict[str, object]]:
    folder = points_dir(config)
    if not folder.is_dir():
        return []
    return [json.loads(f.read_text(encoding="utf-8")) for f in sorted(folder.glob("*.json"))]


def _check_trusted(point: Path) -> None:
    """Refuse a point root did not write: rollback chmods and chowns what it lists, as root.

    The points live below ``state/``, which the service user owns; it cannot make a root-owned
    file or folder, but it could put its own ``harden/`` folder there.
    """
    for path in (point.parent, point):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            mode = stat.S_IMODE(st.st_mode)
            raise PermissionError(f"{path} is not root's own (uid {st.st_uid}, mode {mode:04o}): not used")


def rollback(config: Config, point_id: str | None = None) -> dict[str, object]:
    """Restore the point (the newest not yet rolled back by default); returns it."""
    points = [p for p in history(config) if point_id in (None, p["id"])]
    if point_id is None:
        points = [p for p in points if not p.get("rolled_back")]
    if not points:
        raise LookupError(f"no rollback point {point_id}" if point_id else "no rollback point to restore")
    point = points[-1]
    _check_trusted(points_dir(config) / f"{point['id']}.json")
    table = point["table"]
    if table is None:
        nft.delete_table()
    else:
        nft.load_table(str(table))
    for key, value in dict(point["sysctls"]).items():  # type: ignore[call-overload]
        sysctl_path(key).write_text(f"{value}\n", encoding="ascii")
    dropin = Path(str(point["root"])) / DROPIN
    if point.get("dropin_written"):
        if point["dropin"] is None:
            dropin.unlink(missing_ok=True)
        else:
            dropin.write_text(str(point["dropin"]), encoding="utf-8")
    skipped: list[str] = []
    modes, owners = dict(point["modes"]), dict(point.get("owners") or {})  # type: ignore[call-overload]
    for file, ids in dict(point.get("files") or {}).items():  # type: ignore[call-overload]
        uid, gid = owners.get(file, (None, None))
        try:
            st = os.lstat(file)
            now = Identity(ids[0], ids[1], st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
            change(file, now, uid=uid, gid=gid, mode=modes.get(file))
        except OSError as exc:
            skipped.append(str(exc.strerror) if isinstance(exc, NotChanged) else f"{file}: {exc.strerror}")
    if "files" not in point:  # a point written before owners were recorded
        for file, mode in modes.items():
            os.chmod(file, int(mode), follow_symlinks=False)
    for unit, state in dict(point["services"]).items():  # type: ignore[call-overload]
        if shutil.which("systemctl") is None:
            break
        if state.get("enabled") == "enabled":
            subprocess.run(["systemctl", "enable", unit], capture_output=True, check=False)
        if state.get("active") == "active":
            subprocess.run(["systemctl", "start", unit], capture_output=True, check=False)
    if point.get("unit") is not None:
        _write_unit(Path(str(point["root"])), str(point["unit"]))
    point["rolled_back"] = time.time()
    point["not_restored"] = skipped
    path = points_dir(config) / f"{point['id']}.json"
    path.write_text(json.dumps(point, indent=2), encoding="utf-8")
    return point
