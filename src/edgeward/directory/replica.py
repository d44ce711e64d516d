"""The directory replica: what the gateway knows of the directory, in one SQLite file.

A sync (pull or push) builds the whole new state in memory and :func:`write_replica` writes it
to a fresh file beside the old one, fsyncs it and renames it over ``directory.db``: a reader
sees the previous replica or the new one, never half of a sync, and a sync that dies halfway
(a directory stopping mid-page, a crash) leaves the previous replica as it was.

The gateway reads through :class:`ReplicaReader`: an in-memory snapshot (address -> object)
loaded in a worker thread, and loaded again when the file's identity (inode, mtime, size)
changes, checked at most once a second. Lookups are dictionary reads on the event loop.

Tables: ``objects`` (stable id, DN, kind, change marker), ``addresses`` (address -> object),
``members`` (group -> member DN), ``lists`` (per-object safe senders, blocked senders, safe
recipients, as SHA-256 digests: ``directory.lists``), ``domains`` (accepted domains), ``meta``
(last full and incremental sync, change marker, ``list_format``).

The file never holds a list value in clear: :func:`write_replica` passes every list through
``lists.digests``. A replica written before the lists were hashed (no ``list_format`` in its
meta) still loads: its values are hashed as they are read, so lookups answer the same, and
``meta.list_format`` says ``plain`` until the next sync or push writes the file again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeward.directory.lists import digests

REPLICA_FILE = "directory.db"
LIST_KINDS = ("safe", "blocked", "safe-recipient")
_RECHECK = 1.0

_SCHEMA = """
CREATE TABLE objects (id TEXT PRIMARY KEY, dn TEXT NOT NULL, kind TEXT NOT NULL, marker TEXT NOT NULL);
CREATE TABLE addresses (address TEXT PRIMARY KEY, object_id TEXT NOT NULL);
CREATE TABLE members (group_id TEXT NOT NULL, member_dn TEXT NOT NULL);
CREATE TABLE lists (object_id TEXT NOT NULL, list TEXT NOT NULL, value TEXT NOT NULL);
CREATE TABLE domains (domain TEXT PRIMARY KEY);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One mail object of the directory."""

    id: str
    dn: str
    kind: str  # user, contact or group
    addresses: tuple[str, ...]
    marker: str = ""
    members: tuple[str, ...] = ()  # member DNs of a group
    # SHA-256 hex digests (``directory.lists``), never addresses in clear.
    safe: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()
    safe_recipients: tuple[str, ...] = ()


@dataclass(slots=True)
class Meta:
    """Sync metadata; times are Unix seconds, 0 for never."""

    last_full: float = 0.0
    last_incremental: float = 0.0
    last_config: float = 0.0
    marker: str = ""
    source: str = ""
    # How the file read keeps the lists: sha256, or plain for one written before they were hashed.
    list_format: str = "sha256"

    @property
    def last_success(self) -> float:
        return max(self.last_full, self.last_incremental)


@dataclass(slots=True)
class ReplicaState:
    """The whole replica in memory: what a sync builds and what readers look up."""

    entries: dict[str, Entry] = field(default_factory=dict)
    domains: frozenset[str] = frozenset()
    meta: Meta = field(default_factory=Meta)
    by_address: dict[str, Entry] = field(default_factory=dict)
    by_dn: dict[str, Entry] = field(default_factory=dict)

    def index(self) -> ReplicaState:
        self.by_address = {a: e for e in self.entries.values() for a in e.addresses}
        self.by_dn = {normal_dn(e.dn): e for e in self.entries.values()}
        return self

    def groups_of(self, entry: Entry) -> list[Entry]:
        dn = normal_dn(entry.dn)
        return [e for e in self.entries.values() if e.kind == "group" and dn in map(normal_dn, e.members)]

    def counts(self) -> dict[str, int]:
        kinds = [e.kind for e in self.entries.values()]
        return {
            "users": kinds.count("user"),
            "contacts": kinds.count("contact"),
            "groups": kinds.count("group"),
            "addresses": len(self.by_address),
            "domains": len(self.domains),
        }


_DN_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2}|.)", re.DOTALL)
_DN_SPECIAL = re.compile(r'([,+"\\<>;=])')


def _split_rdns(dn: str) -> list[str]:
    parts, start, i = [], 0, 0
    while i < len(dn):
        if dn[i] == "\\":
            i += 2
            continue
        if dn[i] in ",;":
            parts.append(dn[start:i])
            start = i + 1
        i += 1
    parts.append(dn[start:])
    return parts


def _unescape(value: str) -> str:
    # Hex escapes are bytes of UTF-8 (\c3\a9 is one letter), so decode them together.
    out = bytearray()
    pos = 0
    for m in _DN_ESCAPE.finditer(value):
        out += value[pos : m.start()].encode()
        out += bytes.fromhex(m[1]) if len(m[1]) == 2 else m[1].encode()
        pos = m.end()
    out += value[pos:].encode()
    return out.decode("utf-8", "replace")


def normal_dn(dn: str) -> str:
    """``dn`` in one form for comparison (RFC 4514): spaces around separators dropped, escapes
    decoded and written one way again, case folded. A group's ``member`` values come back as a
    client wrote them (``uid=a, ou=People``), an entry's DN as the server keeps it; both must
    meet here."""
    out = []
    for rdn in _split_rdns(dn):
        kind, _, value = rdn.partition("=")
        text = _DN_SPECIAL.sub(r"\\\1", _unescape(value.strip()).lower())
        out.append(f"{kind.strip().lower()}={text}")
    return ",".join(out)


def replica_path(state_dir: Path) -> Path:
    return state_dir / REPLICA_FILE


def write_replica(path: Path, state: ReplicaState, *, owner: tuple[int, int] | None = None) -> None:
    """Write ``state`` to a new file and rename it over ``path`` (atomic; see the module doc)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        db = sqlite3.connect(tmp)
        try:
            db.executescript(_SCHEMA)
            with db:
                _insert(db, state)
        finally:
            db.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o640)
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    finally:
        tmp.unlink(missing_ok=True)


def _insert(db: sqlite3.Connection, state: ReplicaState) -> None:
    entries = state.entries.values()
    db.executemany(
        "INSERT INTO objects VALUES (?, ?, ?, ?)", ((e.id, e.dn, e.kind, e.marker) for e in entries)
    )
    # An address held by two objects is the directory's mistake; the first one keeps it.
    db.executemany(
        "INSERT OR IGNORE INTO addresses VALUES (?, ?)", ((a, e.id) for e in entries for a in e.addresses)
    )
    db.executemany("INSERT INTO members VALUES (?, ?)", ((e.id, m) for e in entries for m in e.members))
    rows = (
        (e.id, kind, v)
        for e in entries
        for kind, values in zip(LIST_KINDS, (e.safe, e.blocked, e.safe_recipients), strict=True)
        for v in digests(values)
    )
    db.executemany("INSERT INTO lists VALUES (?, ?, ?)", rows)
    db.executemany("INSERT INTO domains VALUES (?)", ((d,) for d in sorted(state.domains)))
    m = state.meta
    meta = {
        "last_full": m.last_full,
        "last_incremental": m.last_incremental,
        "last_config": m.last_config,
        "marker": m.marker,
        "source": m.source,
        "list_format": "sha256",
    }
    db.executemany("INSERT INTO meta VALUES (?, ?)", ((k, json.dumps(v)) for k, v in meta.items()))


def read_replica(path: Path) -> ReplicaState:
    """The replica at ``path``; raises FileNotFoundError when no sync has written one yet."""
    if not path.exists():
        raise FileNotFoundError(path)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return _load(db)
    finally:
        db.close()


def _load(db: sqlite3.Connection) -> ReplicaState:
    addresses: dict[str, list[str]] = {}
    for address, oid in db.execute("SELECT address, object_id FROM addresses ORDER BY rowid"):
        addresses.setdefault(oid, []).append(address)
    members: dict[str, list[str]] = {}
    for gid, dn in db.execute("SELECT group_id, member_dn FROM members"):
        members.setdefault(gid, []).append(dn)
    lists: dict[tuple[str, str], list[str]] = {}
    for oid, kind, value in db.execute("SELECT object_id, list, value FROM lists"):
        lists.setdefault((oid, kind), []).append(value)
    raw = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
    meta = Meta(**{k: raw[k] for k in Meta.__dataclass_fields__ if k in raw})
    meta.list_format = str(raw.get("list_format", "plain"))
    # write_replica put digests only in a file that says sha256; an earlier one is hashed here.
    as_read = tuple if meta.list_format == "sha256" else digests
    entries = {
        oid: Entry(
            oid,
            dn,
            kind,
            tuple(addresses.get(oid, ())),
            marker,
            tuple(members.get(oid, ())),
            *(as_read(lists.get((oid, k), ())) for k in LIST_KINDS),
        )
        for oid, dn, kind, marker in db.execute("SELECT id, dn, kind, marker FROM objects")
    }
    domains = frozenset(d for (d,) in db.execute("SELECT domain FROM domains"))
    return ReplicaState(entries, domains, meta).index()


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class ReplicaReader:
    """The gateway's view of the replica: a snapshot, reloaded off the loop when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state: ReplicaState | None = None
        self.error = ""
        self._identity: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        self._lock = asyncio.Lock()

    async def current(self) -> ReplicaState | None:
        """The snapshot, refreshed if the file changed; None while there is no readable replica."""
        now = time.monotonic()
        if now - self._checked < _RECHECK:
            return self.state
        async with self._lock:
            if now - self._checked < _RECHECK:
                return self.state
            await asyncio.to_thread(self._refresh)
            self._checked = time.monotonic()
        return self.state

    def _refresh(self) -> None:
        ident = _identity(self.path)
        if ident is not None and ident == self._identity:
            return
        try:
            state = read_replica(self.path)
        except FileNotFoundError:
            self.error = f"{self.path}: no replica yet (run 'edgeward directory sync')"
            return
        except (sqlite3.Error, OSError, ValueError, KeyError) as exc:
            # A broken file keeps the last good snapshot: the next sync writes a whole new one.
            self.error = f"{self.path}: cannot read the replica ({exc})"
            return
        self.state, self._identity, self.error = state, ident, ""


def age(meta: Meta, now: float | None = None) -> float | None:
    """Seconds since the last successful sync, None when there was none."""
    if meta.last_success <= 0:
        return None
    return (time.time() if now is None else now) - meta.last_success
