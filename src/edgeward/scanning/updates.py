"""Signature updates: freshclam against the configured mirror, then every engine reloads.

One round (:func:`update_signatures`), run by ``edgeward av update`` and, every
``[antivirus.updates] interval`` when a mirror is set, by the gateway (:func:`run_updates`):

1. freshclam runs with a configuration generated for the round (never the host's
   ``freshclam.conf``): ``DatabaseDirectory`` is clamd's own (read from
   ``updates.clamd_conf``), ``PrivateMirror`` the configured mirror (ClamAV's
   ``DatabaseMirror`` when none is set), one ``DatabaseCustomURL`` per custom database,
   ``DNSDatabaseInfo no`` (a private mirror has no DNS TXT record to ask), ``ScriptedUpdates
   no`` (whole files, no .cdiff patches a private mirror rarely carries) and, with
   ``official_databases`` off, ``ExcludeDatabase`` for main, daily and bytecode (a mirror of
   custom databases only; the official .cvd files are signed by ClamAV and cannot be built
   locally). ``DatabaseOwner`` is the owner of the database folder, so freshclam, started as
   root, writes its files as the user clamd reads them as (usually ``clamav``).
2. The database folder is compared before and after (name, size, mtime and the version in a
   .cvd/.cld header): that is "what changed".
3. If anything changed, clamd is told ``RELOAD`` over its socket; it loads the new databases
   beside the old ones and swaps (clamd's concurrent reload), so scanning never stops.
4. YARA rules and hash lists reload: the gateway's engines at once (:meth:`reload`); from the
   command line, the files are compiled and parsed to check them (the gateway's engines notice
   the change by their fingerprint within seconds).

The result of the last round is kept in ``DATA_DIR/state/av-update.json`` (handed to the
service user when written by root), so ``av status`` can show a failed update.

Stale signatures: the newest database's build time (a .cvd header's, else its mtime) older
than ``max_signature_age`` is an alarm: an ERROR log line at each round, an unhealthy
``signatures`` row in ``av status``.

Security: URLs are checked by the configuration (no spaces or line breaks, so a URL cannot add
a line to the generated freshclam.conf); the configuration file is private to the round and
removed after it; freshclam's output is only read, cut to printable characters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgeward.config.ownership import give_fd, make_private_dirs, service_owner
from edgeward.config.schema import Config
from edgeward.notify.events import Event, EventSink
from edgeward.ports import EngineStatus

__all__ = [
    "Reloadable",
    "UpdateReport",
    "clamd_reload",
    "database_directory",
    "freshclam_config",
    "run_updates",
    "signature_status",
    "snapshot",
    "update_signatures",
]

log = logging.getLogger("edgeward.scanning.updates")

DEFAULT_DATABASE_DIRECTORY = Path("/var/lib/clamav")
OFFICIAL = ("main", "daily", "bytecode")
# freshclam's own bookkeeping in the database folder, not signatures.
_NOT_SIGNATURES = {"freshclam.dat", "mirrors.dat"}
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
STATE_FILE = "av-update.json"


class Reloadable(Protocol):
    name: str

    async def reload(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class DatabaseFile:
    size: int
    mtime: float
    version: str = ""  # a .cvd/.cld header's version number
    built: float | None = None  # a .cvd/.cld header's build time


@dataclass(slots=True)
class UpdateReport:
    """What one round did; ``ok`` is false when freshclam or the clamd reload failed."""

    started: float
    ok: bool = False
    freshclam_code: int | None = None
    changed: list[str] = field(default_factory=list)
    clamd: str = ""
    engines: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    signatures_at: float | None = None
    stale: bool = False
    output: list[str] = field(default_factory=list)


def database_directory(clamd_conf: Path) -> Path:
    """clamd's ``DatabaseDirectory`` (clamd.conf(5)); ClamAV's default when the file says none."""
    try:
        text = clamd_conf.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return DEFAULT_DATABASE_DIRECTORY
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "DatabaseDirectory" and value.strip():
            return Path(value.strip())
    return DEFAULT_DATABASE_DIRECTORY


def freshclam_config(
    database_dir: Path, owner: str, mirror: str, custom_urls: Sequence[str], *, official: bool = True
) -> str:
    lines = [
        f"DatabaseDirectory {database_dir}",
        f"DatabaseOwner {owner}",
        "DNSDatabaseInfo no",
        "ScriptedUpdates no",
        "Foreground yes",
        "LogSyslog no",
        "LogTime no",
        "MaxAttempts 2",
        # clamd is told to reload by the caller, once, after every database is in place.
        "TestDatabases yes",
    ]
    lines.append(f"PrivateMirror {mirror}" if mirror else "DatabaseMirror database.clamav.net")
    lines += [f"DatabaseCustomURL {url}" for url in custom_urls]
    if not official:
        lines += [f"ExcludeDatabase {name}" for name in OFFICIAL]
    for line in lines:
        if "\n" in line or "\r" in line:
            raise ValueError(f"a freshclam setting holds a line break: {line!r}")
    return "\n".join(lines) + "\n"


def _cvd_header(path: Path) -> tuple[str, float | None]:
    # A .cvd/.cld starts with a 512-byte header "ClamAV-VDB:date:version:sigs:flevel:md5:dsig:
    # builder:stime"; stime is the build time in seconds since the epoch.
    try:
        with path.open("rb") as f:
            head = f.read(512).decode("ascii", "replace")
    except OSError:
        return "", None
    fields = head.rstrip("\0 ").split(":")
    if len(fields) < 9 or fields[0] != "ClamAV-VDB":
        return "", None
    try:
        return fields[2], float(fields[8].strip("\0 ").split()[0])
    except (ValueError, IndexError):
        return fields[2], None


def snapshot(database_dir: Path) -> dict[str, DatabaseFile]:
    """The signature files of the database folder (freshclam's temporary folders left out)."""
    files: dict[str, DatabaseFile] = {}
    try:
        entries = list(os.scandir(database_dir))
    except OSError:
        return files
    for entry in entries:
        if entry.name in _NOT_SIGNATURES or not entry.is_file(follow_symlinks=False):
            continue
        st = entry.stat(follow_symlinks=False)
        version, built = ("", None)
        if entry.name.endswith((".cvd", ".cld")):
            version, built = _cvd_header(Path(entry.path))
        files[entry.name] = DatabaseFile(st.st_size, st.st_mtime, version, built)
    return files


def changes(before: dict[str, DatabaseFile], after: dict[str, DatabaseFile]) -> list[str]:
    out: list[str] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old is None:
            out.append(f"added {name}" + (f" (version {new.version})" if new and new.version else ""))
        elif new is None:
            out.append(f"removed {name}")
        elif (old.size, old.mtime, old.version) != (new.size, new.mtime, new.version):
            versions = f" ({old.version} -> {new.version})" if old.version != new.version else ""
            out.append(f"updated {name}{versions}")
    return out


def newest_signatures(files: dict[str, DatabaseFile]) -> float | None:
    times = [f.built if f.built is not None else f.mtime for f in files.values()]
    return max(times, default=None)


async def clamd_reload(address: str | tuple[str, int], limit: float = 30.0) -> str:
    """Send ``RELOAD`` to clamd and return its answer (``RELOADING``); raises OSError/TimeoutError."""
    async with asyncio.timeout(limit):
        if isinstance(address, str):
            reader, writer = await asyncio.open_unix_connection(address)
        else:
            reader, writer = await asyncio.open_connection(*address)
        try:
            writer.write(b"zRELOAD\0")
            await writer.drain()
            reply = await reader.read(256)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return reply.rstrip(b"\0\n").decode("ascii", "replace")


def _owner_name(folder: Path) -> str:
    # Only root can become another user: unprivileged (the gateway's own schedule), freshclam
    # writes as itself, so the folder must be writable by the service user.
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        return pwd.getpwuid(folder.stat().st_uid).pw_name
    except (OSError, KeyError):
        return pwd.getpwuid(os.geteuid()).pw_name


async def run_freshclam(
    freshclam: Path, conf: str, *, limit: float, on_line: Callable[[str], None] | None = None
) -> tuple[int | None, list[str]]:
    """freshclam's exit code (None if it was stopped after ``limit`` seconds) and its output."""
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgeward-freshclam-") as tmp:
        path = Path(tmp) / "freshclam.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(conf)
        # Private (a mirror URL may carry credentials): freshclam reads it before it drops to
        # DatabaseOwner.
        proc = await asyncio.create_subprocess_exec(
            str(freshclam), f"--config-file={path}", "--stdout",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(limit):
                async for raw in proc.stdout:
                    line = _UNPRINTABLE.sub("?", raw.decode("utf-8", "replace").rstrip())[:300]
                    if line:
                        lines.append(line)
                        if on_line is not None:
                            on_line(line)
                return await proc.wait(), lines
        except TimeoutError:
            proc.kill()
            await proc.wait()
            lines.append(f"freshclam stopped after {limit:g}s")
            return None, lines


async def update_signatures(
    config: Config,
    *,
    engines: Sequence[Reloadable] = (),
    on_line: Callable[[str], None] | None = None,
    now: Callable[[], float] = time.time,
) -> UpdateReport:
    """One round: freshclam, clamd RELOAD, engine reloads; see the module docstring."""
    av = config.antivirus
    up = av.updates
    report = UpdateReport(started=now())
    db = database_directory(up.clamd_conf)
    before = snapshot(db)
    try:
        official = up.official_databases
        conf = freshclam_config(db, _owner_name(db), up.mirror, up.custom_urls, official=official)
        code, output = await run_freshclam(up.freshclam, conf, limit=up.timeout, on_line=on_line)
    except (OSError, ValueError) as exc:
        code, output = None, [f"cannot run {up.freshclam}: {exc}"]
    report.freshclam_code, report.output = code, output
    if code != 0:
        last = output[-1] if output else f"freshclam failed (exit code {code})"
        report.errors.append(next((x for x in reversed(output) if "ERROR" in x), last))
    after = snapshot(db)
    report.changed = changes(before, after)
    if report.changed and av.clamd.enabled:
        try:
            report.clamd = await clamd_reload(av.clamd.address)
        except (OSError, TimeoutError) as exc:
            report.clamd = f"not reloaded: {exc or 'no answer'}"
            report.errors.append(f"clamd: {report.clamd}")
    elif av.clamd.enabled:
        report.clamd = "unchanged, not reloaded"
    for engine in engines:
        if await engine.reload():
            report.engines[engine.name] = "reloaded"
        else:
            report.engines[engine.name] = "reload failed (the last good set stays in use)"
            report.errors.append(f"{engine.name}: reload failed")
    report.signatures_at = newest_signatures(after)
    report.stale = report.signatures_at is None or now() - report.signatures_at > up.max_signature_age
    report.ok = not report.errors
    save_report(config, report)
    return report


def _state_path(config: Config) -> Path:
    return config.server.data_dir / "state" / STATE_FILE


def save_report(config: Config, report: UpdateReport) -> None:
    """Keep the round's result for ``av status``, written atomically and owned by the service."""
    path = _state_path(config)
    owner = service_owner(path.parent)
    try:
        make_private_dirs(path.parent, owner=owner)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".av-update.")
        with os.fdopen(fd, "w") as f:
            give_fd(f.fileno(), owner)
            json.dump({**asdict(report), "output": report.output[-20:]}, f)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot record the signature update result in %s: %s", path, exc)


def load_report(config: Config) -> dict[str, Any] | None:
    try:
        data = json.loads(_state_path(config).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def signature_status(config: Config) -> EngineStatus | None:
    """The ``signatures`` row of ``av status``: database age and the last update's result.

    None (no row) while clamd is off, or no mirror or custom database is configured and no
    update has run: then the host's own freshclam service keeps the databases, not Edgeward.
    """
    av = config.antivirus
    last = load_report(config)
    if not av.clamd.enabled or (not av.updates.mirror and not av.updates.custom_urls and last is None):
        return None
    db = database_directory(av.updates.clamd_conf)
    files = snapshot(db)
    newest = newest_signatures(files)
    details = [f"{db}: {len(files)} database file(s)"]
    healthy = bool(files)
    if last is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(last.get("started", 0))))
        errors = [str(e) for e in last.get("errors", [])]
        result = "ok" if last.get("ok") else "FAILED: " + "; ".join(errors)
        details.append(f"last update {when} UTC: {result}")
        healthy = healthy and bool(last.get("ok"))
    else:
        details.append("no update has run yet ('edgeward av update')")
    return EngineStatus("signatures", healthy, "freshclam", newest, "; ".join(details))


def stale_alarm(report: UpdateReport, limit: float, mirror: str, now: float) -> None:
    """The loud line an operator's log watch should catch."""
    at = report.signatures_at
    age = "of unknown age" if at is None else f"{(now - at) / 3600:.1f}h old"
    log.error(
        "ALARM: anti-virus signatures are stale (the newest is %s, the limit %.1fh); check the mirror %s",
        age, limit / 3600, mirror or "(ClamAV's own)",
    )  # fmt: skip


def stale_event(report: UpdateReport, limit: float, mirror: str, now: float) -> Event:
    at = report.signatures_at
    age = "unknown" if at is None else f"{(now - at) / 3600:.1f}h"
    return Event.make(
        "signatures_stale", "error",
        f"anti-virus signatures are stale ({age} old, limit {limit / 3600:.1f}h)",
        age=age, limit=f"{limit / 3600:.1f}h", mirror=mirror or "(ClamAV's own)",
        newest=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at)) if at is not None else "none",
    )


async def run_updates(
    config: Callable[[], Config],
    engines: Callable[[], Sequence[Reloadable]],
    *,
    now: Callable[[], float] = time.time,
    notifier: EventSink | None = None,
) -> None:
    """The gateway's update task: one round every ``interval``, until cancelled.

    With a notifier, a failed round is a ``signature_update_failed`` event and stale signatures
    a ``signatures_stale`` event (rate-limited by the notifier like every other kind).

    The configuration is read again each round (a SIGHUP reload changes the mirror or the
    interval without a restart); a failed round is logged and the next one comes as usual.
    """
    while True:
        current = config()
        up = current.antivirus.updates
        try:
            report = await update_signatures(current, engines=engines(), now=now)
            if report.ok:
                shown = ", ".join(report.changed) or "no change"
                log.info("signature update: %s; clamd: %s", shown, report.clamd or "off")
            else:
                log.error("signature update failed: %s", "; ".join(report.errors))
                if notifier is not None:
                    notifier.emit(Event.make(
                        "signature_update_failed", "error",
                        "signature update failed: " + "; ".join(report.errors),
                        mirror=up.mirror, errors=report.errors[:5],
                    ))  # fmt: skip
            if report.stale:
                stale_alarm(report, up.max_signature_age, up.mirror, now())
                if notifier is not None:
                    notifier.emit(stale_event(report, up.max_signature_age, up.mirror, now()))
        except Exception:
            log.exception("signature update round failed; trying again in %.0fs", up.interval)
        await asyncio.sleep(up.interval)
