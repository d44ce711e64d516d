"""The gateway's local state database: one SQLite file, a schema version and ordered migrations.

This module owns :class:`StateStore`, the single-machine store for state that outlives a
connection: user accounts today, and later sender reputation, greylisting triplets and learned
spam statistics. It is stdlib ``sqlite3`` in WAL mode with ``synchronous=NORMAL`` (readers never
block the writer; a power loss may lose the last transactions but never corrupts the file), at
``DATA_DIR/state/edgeward.db`` by default (:func:`default_db_path`).

The schema grows only by appending a :class:`Migration` to :data:`MIGRATIONS`; each runs in its
own transaction and bumps ``schema_version``. A database written by a newer release (a version
this code does not know) is refused rather than guessed at.

One connection is shared and serialised by a lock, so the store may be used from the event
loop's worker threads: :meth:`StateStore.call` runs a function inside a transaction with
``asyncio.to_thread``, so the hot path never blocks the loop on disk I/O.

Security: the file holds password hashes. It is created ``0600`` (an existing file with looser
permissions is tightened) in a ``0700`` folder; SQLite gives its ``-wal``/``-shm`` files the
same mode. When created by root (an administrator running ``edgeward user add``), the new file is
handed to the owner of its folder so that the unprivileged gateway can still open it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from edgeward.config.ownership import hand_over
from edgeward.errors import EdgewardError

__all__ = [
    "DB_FILENAME",
    "MIGRATIONS",
    "Migration",
    "StateStore",
    "StateStoreError",
    "default_db_path",
]

T = TypeVar("T")

DB_FILENAME = "edgeward.db"
_FILE_MODE = 0o600
_DIR_MODE = 0o700


class StateStoreError(EdgewardError):
    """The state database cannot be opened, migrated or used."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: ``version`` is 1, 2, 3 ... in order; ``sql`` is a script."""

    version: int
    description: str
    sql: str


# Append only: a released migration is never edited, or databases that ran it would diverge.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "user accounts for SMTP AUTH",
        """
        CREATE TABLE users (
            name    TEXT PRIMARY KEY COLLATE NOCASE,
            hash    TEXT NOT NULL,
            disabled INT NOT NULL DEFAULT 0,
            created REAL NOT NULL,
            updated REAL NOT NULL
        );
        """,
    ),
    Migration(
        2,
        "MTA-STS policy cache",
        """
        CREATE TABLE mta_sts_policies (
            domain    TEXT PRIMARY KEY,
            policy_id TEXT NOT NULL,
            mode      TEXT NOT NULL,
            mx        TEXT NOT NULL,
            max_age   INTEGER NOT NULL,
            fetched   REAL NOT NULL
        );
        """,
    ),
    Migration(
        3,
        "the sender addresses each AUTH account may use",
        """
        CREATE TABLE user_addresses (
            name    TEXT NOT NULL COLLATE NOCASE REFERENCES users (name) ON DELETE CASCADE,
            address TEXT NOT NULL,
            PRIMARY KEY (name, address)
        );
        """,
    ),
)


def default_db_path(data_dir: Path) -> Path:
    """``DATA_DIR/state/edgeward.db``."""
    return data_dir / "state" / DB_FILENAME


def _check_migrations(migrations: Sequence[Migration]) -> None:
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(f"migration {migration.version} out of order (expected {expected})")


class StateStore:
    """The SQLite state database at ``path``.

    Use as ``with StateStore(path) as store:`` or call :meth:`connect` / :meth:`close`.
    ``create=False`` refuses to create a missing file (for read-only tools).
    """

    def __init__(
        self,
        path: Path,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        create: bool = True,
        busy_timeout: float = 5.0,
    ) -> None:
        _check_migrations(migrations)
        self.path = path
        self._migrations = tuple(migrations)
        self._create = create
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._owner: int | None = None
        self._reopen = False  # set by open_later(): reconnect on use instead of failing

    # -- lifecycle ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Open (creating if allowed) and migrate the database. Idempotent."""
        if self._conn is not None:
            return
        self._prepare_file()
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly
            # the ``with store.transaction()`` block and nothing else.
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StateStoreError(f"{self.path}: cannot open the state database ({exc})") from None
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StateStoreError(f"{self.path}: cannot switch the state database to WAL mode")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
            self._migrate()
        except sqlite3.Error as exc:
            conn.close()
            self._conn = None
            raise StateStoreError(f"{self.path}: cannot use the state database ({exc})") from None
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def open_later(self) -> StateStoreError | None:
        """Connect now if the database can be used; otherwise keep trying at each use.

        Returns the error that kept it closed (for the caller to log), or None. Meanwhile every
        transaction raises :class:`StateStoreError`, which the AUTH exchange answers ``454``.
        """
        self._reopen = True
        try:
            self.connect()
        except StateStoreError as exc:
            return exc
        return None

    def close(self) -> None:
        """Close the connection; the store may be connected again later."""
        self._reopen = False
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> StateStore:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_connected(self) -> bool:
        return self._conn is not None

    # -- transactions ------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A transaction: committed when the block ends, rolled back if it raises.

        ``write=True`` takes the write lock at once (``BEGIN IMMEDIATE``), so a read-then-write
        block cannot fail half-way with ``SQLITE_BUSY``; reads may pass ``write=False``.
        Transactions do not nest.
        """
        if self._owner == threading.get_ident():
            raise RuntimeError("StateStore transactions do not nest")
        if self._conn is None and self._reopen:
            # A database that could not be opened at start (corrupt, unreadable) is tried again
            # at each use, so an administrator's repair takes effect without a restart.
            with self._connect_lock:
                if self._conn is None:
                    self.connect()
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StateStoreError("the state database is not connected")
            self._owner = threading.get_ident()
            try:
                try:
                    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                except sqlite3.Error as exc:
                    raise StateStoreError(f"{self.path}: cannot start a transaction ({exc})") from None
                try:
                    yield conn
                except BaseException:
                    # Some errors (SQLITE_FULL, SQLITE_IOERR) end the transaction themselves.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise StateStoreError(f"{self.path}: cannot commit ({exc})") from None
            finally:
                self._owner = None

    def run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """``fn(conn)`` inside one transaction; its result. sqlite errors become StateStoreError."""
        try:
            with self.transaction(write=write) as conn:
                return fn(conn)
        except sqlite3.Error as exc:
            raise StateStoreError(f"{self.path}: {exc}") from None

    async def call(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """:meth:`run` in a worker thread, so the event loop never waits on the disk."""
        return await asyncio.to_thread(self.run, fn, write=write)

    def schema_version(self) -> int:
        return self.run(_read_version)

    # -- internals ---------------------------------------------------------------------------

    def _prepare_file(self) -> None:
        exists = self.path.exists()
        if not exists and not self._create:
            raise StateStoreError(f"{self.path}: no state database here")
        folder = self.path.parent
        try:
            if not folder.exists():
                folder.mkdir(mode=_DIR_MODE, parents=True)
                _give_to_parent_owner(folder)
            if exists:
                mode = stat.S_IMODE(self.path.stat().st_mode)
                if mode & 0o077:
                    os.chmod(self.path, _FILE_MODE)
                return
            # Create the file ourselves with 0600 instead of letting sqlite use the umask.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
            os.close(fd)
            _give_to_parent_owner(self.path)
        except FileExistsError:
            return  # another process created it first; it did so with the same mode
        except OSError as exc:
            raise StateStoreError(
                f"{self.path}: cannot create or secure the state database ({exc.strerror})"
            ) from None

    def _migrate(self) -> None:
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            if conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 0:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        current = self.schema_version()
        if current > len(self._migrations):
            raise StateStoreError(
                f"{self.path}: schema version {current} is newer than this release knows "
                f"({len(self._migrations)}); upgrade Edgeward"
            )
        for migration in self._migrations[current:]:
            with self.transaction() as conn:
                # Re-read under the write lock: another process may have migrated meanwhile.
                if _read_version(conn) >= migration.version:
                    continue
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                conn.execute("UPDATE schema_version SET version = ?", (migration.version,))


def _read_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def _statements(script: str) -> Iterator[str]:
    # executescript() would COMMIT our transaction first; split into complete statements instead.
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buffer.strip()[:60]!r}")


def _give_to_parent_owner(path: Path) -> None:
    """As root, hand a newly created file or folder to the owner of its parent folder."""
    hand_over(path)
