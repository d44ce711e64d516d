"""The host checks of ``harden analyse``: sockets, firewall, kernel, services, files, the user.

Everything is read, nothing changed, and nothing needs root: what cannot be read (another
user's file, ``/etc/shadow``, the ruleset without ``CAP_NET_ADMIN``) is reported as not
checked rather than guessed. Listening sockets come from ``/proc/net/tcp`` and ``tcp6``
directly (state 0A), so no process listing library is needed and sockets of other users'
processes are seen too.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import pwd
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edgeward.config.schema import Config
from edgeward.harden.filerules import file_targets, owner_text, service_ids, wanted_owner
from edgeward.harden.findings import Finding
from edgeward.harden.template import RoleTemplate

__all__ = ["Listener", "Notes", "Step", "check_host", "host_steps", "listeners"]

_NOLOGIN = {"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"}
# Which KRN id a kernel setting's finding gets; the first matching fragment wins.
_AT_LEAST = (
    "ptrace_scope", "kptr_restrict", "dmesg_restrict", "perf_event_paranoid", "protected_fifos",
    "protected_regular",
)  # fmt: skip
_KRN_IDS = (
    ("tcp_syncookies", "EW-KRN-001"), ("rp_filter", "EW-KRN-002"), ("redirects", "EW-KRN-003"),
    ("accept_source_route", "EW-KRN-004"), ("kptr_restrict", "EW-KRN-005"),
    ("dmesg_restrict", "EW-KRN-006"), ("ptrace_scope", "EW-KRN-007"), ("protected_", "EW-KRN-008"),
)  # fmt: skip


@dataclass
class Notes:
    """What was checked and what could not be, to print beside the findings."""

    checked: list[str] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Listener:
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int

    @property
    def loopback(self) -> bool:
        addr = self.address
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            return addr.ipv4_mapped.is_loopback
        return addr.is_loopback


def _decode(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # The kernel prints each 32-bit word in host (little-endian) order.
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def listeners(proc_net: Path = Path("/proc/net")) -> list[Listener]:
    """Every TCP socket in LISTEN state in this network namespace."""
    out: set[Listener] = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc_net / name).read_text(encoding="ascii").splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":
                addr, port = fields[1].split(":")
                out.add(Listener(_decode(addr), int(port, 16)))
    return sorted(out, key=lambda x: (x.port, str(x.address)))


def _check_sockets(template: RoleTemplate, notes: Notes) -> Iterator[Finding]:
    found = listeners()
    notes.checked.append(f"{len(found)} listening TCP socket(s) from /proc/net/tcp, tcp6")
    allowed = template.inbound_ports()
    for sock in found:
        if sock.loopback:
            continue
        where = (
            f"{sock.address}:{sock.port}" if sock.address.version == 4 else f"[{sock.address}]:{sock.port}"
        )
        if sock.port in template.loopback_only:
            yield Finding("EW-NET-002", f"{where} (the template allows port {sock.port} on loopback only)")
        elif sock.port not in allowed:
            yield Finding("EW-NET-001", f"{where} is not among the template's ports {sorted(allowed)}")
    listening = {s.port for s in found}
    for port in template.inbound:
        if not port.optional and port.port not in listening:
            yield Finding("EW-NET-003", f"port {port.port} ({port.purpose}) is not listening")


def read_ruleset() -> tuple[str | None, str]:
    """(``nft list ruleset`` text, or None, and why not)."""
    if shutil.which("nft") is None:
        return None, "nft is not installed"
    done = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None, f"nft list ruleset failed: {done.stderr.strip() or done.returncode}"
    return done.stdout, ""


def table_ports(ruleset: str) -> set[int] | None:
    """The TCP ports ``table inet edgeward`` accepts, or None without that table."""
    body = re.search(r"^table inet edgeward \{\n(.*?)^\}", ruleset, re.S | re.M)
    if body is None:
        return None
    ports: set[int] = set()
    for m in re.finditer(r"tcp dport (\{ [\d, ]+ \}|\d+) (?:ct state new )?accept", body.group(1)):
        ports |= {int(p) for p in re.findall(r"\d+", m.group(1))}
    return ports


def _check_firewall(template: RoleTemplate, notes: Notes) -> Iterator[Finding]:
    ruleset, why = read_ruleset()
    if ruleset is None:
        notes.not_checked.append(f"firewall: {why}")
        return
    notes.checked.append("the nftables ruleset")
    ports = table_ports(ruleset)
    if ports is None:
        if not re.search(r"type filter hook input priority \S+; policy drop;", ruleset):
            yield Finding("EW-NET-010", "no input chain with policy drop and no table inet edgeward")
        return
    if ports != template.inbound_ports():
        yield Finding(
            "EW-NET-011",
            f"table inet edgeward accepts {sorted(ports)}, the template {sorted(template.inbound_ports())}",
        )


def sysctl_path(key: str, proc_sys: Path = Path("/proc/sys")) -> Path:
    return proc_sys / key.replace(".", "/")


def _check_sysctls(template: RoleTemplate, notes: Notes) -> Iterator[Finding]:
    unread = []
    for key, want in template.sysctls.items():
        try:
            have = " ".join(sysctl_path(key).read_text(encoding="ascii").split())
        except OSError:
            unread.append(key)
            continue
        if _sysctl_ok(key, have, want):
            continue
        ident = next((i for frag, i in _KRN_IDS if frag in key), "EW-KRN-009")
        yield Finding(ident, f"{key} = {have} (template: {want})")
    notes.checked.append(f"{len(template.sysctls) - len(unread)} kernel setting(s) in /proc/sys")
    if unread:
        notes.not_checked.append(f"kernel settings not present or not readable: {', '.join(unread)}")


def _sysctl_ok(key: str, have: str, want: str) -> bool:
    # These are "at least": a stricter value is no finding.
    if key.endswith(_AT_LEAST) and have.isdigit() and want.isdigit():
        return int(have) >= int(want)
    return have == want


def running_units() -> list[str] | None:
    """Running service units, or None where systemd is not the init system."""
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        return None
    cmd = ["systemctl", "list-units", "--type=service", "--state=running", "--no-legend", "--plain"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _check_services(template: RoleTemplate, notes: Notes) -> Iterator[Finding]:
    units = running_units()
    if units is None:
        notes.not_checked.append("services: systemd is not running on this host")
        return
    notes.checked.append(f"{len(units)} running service unit(s)")
    for unit in units:
        if any(fnmatch.fnmatch(unit, pattern) for pattern in template.services_disable):
            yield Finding("EW-SVC-002", unit)
        elif not any(fnmatch.fnmatch(unit, pattern) for pattern in template.services_allowed):
            yield Finding("EW-SVC-001", unit)


def _check_unit(notes: Notes) -> Iterator[Finding]:
    from edgeward.harden.install import Layout, unit_text

    path = Layout().unit
    try:
        installed = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        yield Finding("EW-SVC-003", f"{path} does not exist")
        return
    except OSError as exc:
        notes.not_checked.append(f"the unit {path}: {exc.strerror}")
        return
    exec_line = next((x for x in installed.splitlines() if x.startswith("ExecStart=")), "")
    # Compare with the shipped unit for the executable the installed one names.
    exe = exec_line.removeprefix("ExecStart=").split(" ", 1)[0] or None
    if installed != unit_text(exe):
        yield Finding("EW-SVC-003", f"{path} differs from the unit this version ships")
    notes.checked.append(f"the unit {path}")


def _check_files(
    template: RoleTemplate, config: Config, config_path: Path, notes: Notes
) -> Iterator[Finding]:
    service = service_ids(config)
    unread: list[str] = []
    links: list[str] = []
    targets = file_targets(template, config, config_path)
    for target in targets:
        path, max_mode, owner = target.path, target.max_mode, target.owner
        if not target.trusted:
            links.append(str(path))
            continue
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        except OSError:
            unread.append(str(path))
            continue
        if stat.S_ISLNK(st.st_mode):
            links.append(str(path))
            continue
        mode = stat.S_IMODE(st.st_mode)
        if mode & ~max_mode:
            yield Finding("EW-FILE-001", f"{path} is {mode:04o} (at most {max_mode:04o})")
        uid, gid = wanted_owner(owner, service)
        if (uid is not None and st.st_uid != uid) or (gid is not None and st.st_gid != gid):
            have, want = owner_text(st.st_uid, st.st_gid), owner_text(uid, gid)
            yield Finding("EW-FILE-002", f"{path} is owned by {have} (want {want})")
    notes.checked.append(f"owner and mode of {len(targets)} path(s)")
    if unread:
        notes.not_checked.append(f"not readable: {', '.join(unread)}")
    if links:
        notes.not_checked.append(f"symlinks not followed: {', '.join(links)}")


def _check_user(config: Config, notes: Notes) -> Iterator[Finding]:
    name = config.server.user
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        yield Finding("EW-USR-003", f"no user {name!r}")
        return
    if pw.pw_uid == 0:
        yield Finding("EW-USR-003", f"{name!r} has uid 0")
    if pw.pw_shell not in _NOLOGIN:
        yield Finding("EW-USR-001", f"{name} has shell {pw.pw_shell}")
    try:
        shadow = Path("/etc/shadow").read_text(encoding="utf-8").splitlines()
    except OSError:
        notes.not_checked.append("the service user's password: /etc/shadow is not readable")
        return
    for line in shadow:
        fields = line.split(":")
        if fields[0] == name and len(fields) > 1 and fields[1] and fields[1][0] not in "!*":
            yield Finding("EW-USR-002", f"{name} has a password hash in /etc/shadow")
    notes.checked.append(f"the service user {name}")


Step = tuple[str, Callable[[], Iterable[Finding]]]


def host_steps(template: RoleTemplate, config: Config, config_path: Path, notes: Notes) -> list[Step]:
    """The host checks as (what, run) steps, so a caller can show progress between them."""
    return [
        ("listening sockets", lambda: _check_sockets(template, notes)),
        ("the firewall", lambda: _check_firewall(template, notes)),
        ("kernel settings", lambda: _check_sysctls(template, notes)),
        ("running services", lambda: _check_services(template, notes)),
        ("the unit", lambda: _check_unit(notes)),
        ("owners and modes", lambda: _check_files(template, config, config_path, notes)),
        ("the service user", lambda: _check_user(config, notes)),
    ]


def check_host(template: RoleTemplate, config: Config, config_path: Path, notes: Notes) -> list[Finding]:
    return [f for _, run in host_steps(template, config, config_path, notes) for f in run()]
