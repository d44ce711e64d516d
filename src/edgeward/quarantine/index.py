"""A SQLite index of the quarantine's metadata, so a search does not read every entry's file.

``<quarantine>/index.sqlite`` holds one row per entry: its id, date, size, the searchable
fields lower-cased (sender, recipients, subject, reason and decided-by, finding names with
engines and signatures) and the entry's metadata. The store keeps it on every write, rewrite
(a partial release), delete (release, purge, retention) and set-aside; ``quarantine reindex``
builds it again from the files.

The files stay the truth; the index only makes the search fast, and never makes it wrong:

- **Drift.** Before each search the index is reconciled with the folder when the folder
  changed since the last reconciliation (its mtime, recorded only once it is a second old so a
  change in the same clock tick is never missed): the ids on disk are listed (names only) and
  rows are added for entries the index lacks (a writer that died between its rename and its
  row, an older release) and dropped for entries gone. Idle, a search costs one ``stat``.
- **Staleness.** The entries of the page come from their files, not from the index; a row
  that no longer matches its file (a crash between a rewrite and its row) is corrected and the
  query run again.
- **Damage.** An index SQLite cannot read, of another schema, or whose sealed rows do not open
  under the current keys, is removed and built again from the files, then asked.

Encryption at rest: with ``[quarantine] encryption_key_file`` the index must not hold in the
clear what the files hide. The searchable columns are then left empty and the same fields are
kept sealed in ``meta`` (AES-GCM, the store's keys, the row's id as associated data); a search
opens the rows (no file opened, no entry parsed) and filters them in this process.

Several processes (the gateway, administrators' commands) share the file: WAL mode and a busy
timeout; run as root, the files are handed to the service user (``config.ownership``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edgeward.config.ownership import hand_over
from edgeward.quarantine.crypto import Damaged, KeyMismatch, Sealer
from edgeward.quarantine.entry import QuarantineEntry

if TYPE_CHECKING:
    from edgeward.quarantine.service import Search

__all__ = ["INDEX_NAME", "IndexDamaged", "QuarantineIndex", "row_fields"]

log = logging.getLogger(__name__)

INDEX_NAME = "index.sqlite"
SCHEMA = 1
SETTLED = 1_000_000_000  # ns: a folder mtime younger than this may hide a change of the same tick
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    qid TEXT PRIMARY KEY, at REAL NOT NULL, size INTEGER NOT NULL,
    sender TEXT NOT NULL, recipients TEXT NOT NULL, subject TEXT NOT NULL,
    reason TEXT NOT NULL, findings TEXT NOT NULL, meta BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_at ON entries (at DESC, qid DESC);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class IndexDamaged(Exception):
    """The index cannot be used as it is; it is built again."""


def row_fields(e: QuarantineEntry) -> tuple[str, str, str, str, str]:
    """The searchable text of an entry, lower-cased, as :class:`Search` matches it."""
    engines = [x for r in e.engines for x in (r.engine, r.signature, r.finding)]
    return (
        e.mail_from.lower(),
        "\n".join(e.recipients).lower(),
        e.subject.lower(),
        f"{e.reason}\n{e.decided_by}".lower(),
        "\n".join([*e.findings, *engines]).lower(),
    )


class QuarantineIndex:
    """The index of one quarantine folder (see the module docstring)."""

    def __init__(self, root: Path, sealer: Callable[[], Sealer]) -> None:
        self.root = root
        self.path = root / INDEX_NAME
        self._sealer = sealer
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._files_private = False

    # -- the connection ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            version = db.execute("SELECT value FROM state WHERE key = 'schema'").fetchone()
            if version is None:
                db.execute("INSERT OR IGNORE INTO state VALUES ('schema', ?)", (str(SCHEMA),))
            elif version[0] != str(SCHEMA):
                raise IndexDamaged(f"schema {version[0]}, expected {SCHEMA}")
        except (sqlite3.DatabaseError, IndexDamaged):
            db.close()
            raise
        self._private()
        self._db = db
        return db

    def _private(self) -> None:
        # SQLite creates its files by the umask (the WAL at the first write): like every
        # quarantine file they are 0600, and the service user's when made by root.
        for name in (INDEX_NAME, INDEX_NAME + "-wal", INDEX_NAME + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(self.root / name, 0o600)
                hand_over(self.root / name)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _discard(self) -> None:
        """Remove a damaged index; the next use builds a new one."""
        if self._db is not None:
            self._db.close()
            self._db = None
        for name in (INDEX_NAME, INDEX_NAME + "-wal", INDEX_NAME + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.root / name)

    # -- kept by the store ------------------------------------------------------------------

    def _row(self, e: QuarantineEntry) -> tuple[object, ...]:
        sealer = self._sealer()
        fields = row_fields(e)
        if sealer.enabled:
            sealed = sealer.seal(f"index/{e.qid}", json.dumps(fields).encode())
            return (e.qid, e.quarantined_at, e.size, "", "", "", "", "", sealed)
        return (e.qid, e.quarantined_at, e.size, *fields, b"")

    def _write(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        with self._lock:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(sql, rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            if not self._files_private:
                self._private()
                self._files_private = True

    def upsert(self, entries: Iterable[QuarantineEntry]) -> None:
        self._write(
            "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [self._row(e) for e in entries],
        )

    def remove(self, qids: Iterable[str]) -> None:
        self._write("DELETE FROM entries WHERE qid = ?", [(q,) for q in qids])

    def kept(self, change: Callable[[], None]) -> None:
        """Run a store's index update; a failure is logged, never the store's (files are the truth)."""
        try:
            change()
        except (sqlite3.Error, IndexDamaged, OSError) as exc:
            log.warning("quarantine index not updated (the next search reconciles it): %s", exc)

    # -- reconciliation and rebuild -----------------------------------------------------------

    def _recorded(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM state WHERE key = 'folder_mtime'").fetchone()
        return int(row[0]) if row else -1

    def reconcile(self, read: Callable[[str], QuarantineEntry | None]) -> None:
        """Make the rows match the folder when it changed; ``read`` gives an entry by id (None:
        not listable, like a listing leaves it out)."""
        mtime = self.root.stat().st_mtime_ns
        with self._lock:
            db = self._connect()
            if self._recorded(db) == mtime:
                return
        on_disk = {e.name[:-5] for e in os.scandir(self.root)
                   if e.name.endswith(".json") and not e.name.startswith(".")}  # fmt: skip
        with self._lock:
            rows = {r[0] for r in self._connect().execute("SELECT qid FROM entries")}
        missing = [e for e in (read(q) for q in sorted(on_disk - rows)) if e is not None]
        if missing:
            self.upsert(missing)
        if rows - on_disk:
            self.remove(rows - on_disk)
        if time.time_ns() - mtime > SETTLED:
            self._write("INSERT OR REPLACE INTO state VALUES ('folder_mtime', ?)", [(str(mtime),)])

    def rebuild(
        self, entries: Iterable[QuarantineEntry], progress: Callable[[int], None] | None = None
    ) -> int:
        """A new index from ``entries`` (all of the store's); the number of rows."""
        mtime = self.root.stat().st_mtime_ns
        with self._lock:
            self._discard()
        count, batch = 0, list[QuarantineEntry]()
        for entry in entries:
            batch.append(entry)
            if len(batch) >= 1000:
                self.upsert(batch)
                count += len(batch)
                batch.clear()
                if progress is not None:
                    progress(count)
        self.upsert(batch)
        count += len(batch)
        if progress is not None:
            progress(count)
        if time.time_ns() - mtime > SETTLED:
            self._write("INSERT OR REPLACE INTO state VALUES ('folder_mtime', ?)", [(str(mtime),)])
        return count

    # -- the search ---------------------------------------------------------------------------

    def older_than(self, cutoff: float) -> list[str]:
        """Ids of the rows quarantined before ``cutoff`` (retention's candidates)."""
        with self._lock:
            try:
                rows = self._connect().execute("SELECT qid FROM entries WHERE at < ?", (cutoff,))
                return [r[0] for r in rows]
            except sqlite3.DatabaseError as exc:
                raise IndexDamaged(str(exc)) from exc

    def query(self, q: Search) -> tuple[list[str], int] | None:
        """The ids of one page of matches, newest first, and how many match in all; None for a
        query the index cannot answer as the files would (a needle with a line break, which
        the joined recipient and finding texts would match across two of them)."""
        if any("\n" in n for n in _needles(q)):
            return None
        with self._lock:
            db = self._connect()
            try:
                if self._sealer().enabled:
                    return self._query_sealed(db, q)
                return self._query_sql(db, q)
            except sqlite3.DatabaseError as exc:
                raise IndexDamaged(str(exc)) from exc

    def _query_sql(self, db: sqlite3.Connection, q: Search) -> tuple[list[str], int]:
        # One fixed statement: an empty needle is in every text (instr gives 1), an absent date
        # bound holds for every row.
        args = [*_dates(q), *(n.lower() for n in _needles(q))]
        total = int(db.execute(_COUNT, args).fetchone()[0])
        page = db.execute(_PAGE, [*args, max(q.limit, 0), max(q.offset, 0)])
        return [r[0] for r in page], total

    def _query_sealed(self, db: sqlite3.Connection, q: Search) -> tuple[list[str], int]:
        sealer = self._sealer()
        needles = [n.lower() for n in _needles(q)]
        found: list[str] = []
        for qid, meta in db.execute(_ROWS, _dates(q)):
            try:
                fields = json.loads(sealer.open(f"index/{qid}", meta))
            except (KeyMismatch, Damaged, ValueError) as exc:
                raise IndexDamaged(f"row {qid}: {exc}") from exc
            if not isinstance(fields, list) or len(fields) != len(needles):
                raise IndexDamaged(f"row {qid}: not the searchable fields")
            if all(n in str(f) for n, f in zip(needles, fields, strict=True)):
                found.append(qid)
        offset, limit = max(q.offset, 0), max(q.limit, 0)
        return found[offset : offset + limit], len(found)


_COUNT = """SELECT count(*) FROM entries
    WHERE (? IS NULL OR at >= ?) AND (? IS NULL OR at < ?)
    AND instr(sender, ?) > 0 AND instr(recipients, ?) > 0 AND instr(subject, ?) > 0
    AND instr(reason, ?) > 0 AND instr(findings, ?) > 0"""
_PAGE = """SELECT qid FROM entries
    WHERE (? IS NULL OR at >= ?) AND (? IS NULL OR at < ?)
    AND instr(sender, ?) > 0 AND instr(recipients, ?) > 0 AND instr(subject, ?) > 0
    AND instr(reason, ?) > 0 AND instr(findings, ?) > 0
    ORDER BY at DESC, qid DESC LIMIT ? OFFSET ?"""
_ROWS = """SELECT qid, meta FROM entries WHERE (? IS NULL OR at >= ?) AND (? IS NULL OR at < ?)
    ORDER BY at DESC, qid DESC"""


def _needles(q: Search) -> tuple[str, ...]:
    return (q.sender, q.recipient, q.subject, q.reason, q.finding)


def _dates(q: Search) -> list[float | None]:
    return [q.since, q.since, q.until, q.until]
