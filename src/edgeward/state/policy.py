"""The single-machine :class:`edgeward.ports.PolicyStore`: reputation, greylisting, rate counters
and lists in their own SQLite file, ``DATA_DIR/state/policy.db``.

A file of its own, not a table in the accounts database: it churns (a counter write per
connection), and resetting it (deleting the file) must never cost the password hashes. It
reuses :class:`edgeward.state.sqlite.StateStore` for everything below the SQL: WAL mode, the
busy timeout, ``0600`` file in a ``0700`` folder handed to the gateway's user, and ordered
migrations (:data:`POLICY_MIGRATIONS`, append only). WAL lets the receiving process, the
delivery process and CLI commands (``edgeward antispam ip block add``) use the file at once;
every write takes the write lock at ``BEGIN`` (``BEGIN IMMEDIATE``), so a read-modify-write such
as :meth:`SqlitePolicyStore.incr` is atomic across processes.

Expiry is compared with the injected clock's ``now()`` in the queries (never SQLite's own
clock), so tests drive it with a fake clock and every process agrees on what has expired. Expired
rows stay until :meth:`~SqlitePolicyStore.purge_expired` but no read returns them.

Writes, scans and whole lists run in a worker thread; calls made while one transaction runs
share the next (:mod:`edgeward.state.batch`), which more than halves the cost of a call under
concurrency (figures in ``docs/architecture.md``). A point lookup (``get``, ``list_get``,
``list_get_many``, ``list_version``: one indexed row per key) is answered on the event loop from a read-only
connection of its own, in microseconds where the hop to the worker thread costs about 80 us on
a virtual machine. That connection never waits: its busy timeout is zero, and a lookup it cannot
answer at once (the file locked by a recovery, damaged, or not open) goes the worker thread's
way, which waits, reconnects and reports as before. In WAL mode a reader sees the last commit
and does not block the writer.
Every fault of the file (it cannot be opened, is locked beyond the busy timeout, is not a
database or is damaged) is raised as :class:`edgeward.ports.PolicyStoreError`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from edgeward.ports import Clock, ListEntry, PolicyStoreError, StoredValue, SystemClock
from edgeward.state.batch import BatchRunner
from edgeward.state.sqlite import Migration, StateStore, StateStoreError

__all__ = ["POLICY_DB_FILENAME", "POLICY_MIGRATIONS", "SqlitePolicyStore", "default_policy_path"]

T = TypeVar("T")

POLICY_DB_FILENAME = "policy.db"
MAX_KEY_LENGTH = 1024
MAX_VALUE_LENGTH = 1 << 20

POLICY_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "keys with expiry and named lists with per-member expiry",
        """
        CREATE TABLE kv (
            key     TEXT PRIMARY KEY,
            value   TEXT NOT NULL,
            expires REAL
        ) WITHOUT ROWID;
        CREATE INDEX kv_expires ON kv (expires) WHERE expires IS NOT NULL;
        CREATE TABLE list_members (
            list    TEXT NOT NULL,
            member  TEXT NOT NULL,
            comment TEXT NOT NULL,
            added   REAL NOT NULL,
            expires REAL,
            PRIMARY KEY (list, member)
        ) WITHOUT ROWID;
        CREATE INDEX list_members_expires ON list_members (expires) WHERE expires IS NOT NULL;
        """,
    ),
    Migration(
        2,
        "a version token per list, moved by every change of its members",
        # Triggers rather than the store's own statements, so every writer of the file (another
        # process, a newer or older release) moves the token. random(): a file restored from a
        # backup does not hand out a token a reader cached for other contents.
        """
        CREATE TABLE list_versions (
            list    TEXT PRIMARY KEY,
            version INTEGER NOT NULL
        ) WITHOUT ROWID;
        INSERT INTO list_versions (list, version) SELECT DISTINCT list, random() FROM list_members;
        CREATE TRIGGER list_members_inserted AFTER INSERT ON list_members BEGIN
            INSERT INTO list_versions (list, version) VALUES (NEW.list, random())
            ON CONFLICT (list) DO UPDATE SET version = excluded.version;
        END;
        CREATE TRIGGER list_members_updated AFTER UPDATE ON list_members BEGIN
            INSERT INTO list_versions (list, version)
            SELECT list, random() FROM (SELECT OLD.list AS list UNION SELECT NEW.list) WHERE true
            ON CONFLICT (list) DO UPDATE SET version = excluded.version;
        END;
        CREATE TRIGGER list_members_deleted AFTER DELETE ON list_members BEGIN
            INSERT INTO list_versions (list, version) VALUES (OLD.list, random())
            ON CONFLICT (list) DO UPDATE SET version = excluded.version;
        END;
        """,
    ),
)


_MANY_PLACEHOLDERS = 8
_LIST_GET_MANY = {  # built from placeholders alone: no value is ever part of the text
    n: "SELECT member, comment, added, expires FROM list_members"  # noqa: S608
    f" WHERE list = ? AND member IN ({', '.join('?' * n)}) AND (expires IS NULL OR expires > ?)"
    for n in range(1, _MANY_PLACEHOLDERS + 1)
}
_LIST_GET_MANY_JSON = (
    "SELECT member, comment, added, expires FROM list_members"
    " WHERE list = ? AND member IN (SELECT value FROM json_each(?)) AND (expires IS NULL OR expires > ?)"
)


def default_policy_path(data_dir: Path) -> Path:
    """``DATA_DIR/state/policy.db``."""
    return data_dir / "state" / POLICY_DB_FILENAME


def check_name(what: str, text: str) -> None:
    """Refuse an empty or oversized key, list name or member (a caller's mistake)."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"{what} must be a non-empty string")
    if len(text) > MAX_KEY_LENGTH:
        raise ValueError(f"{what} longer than {MAX_KEY_LENGTH} characters")


def check_ttl(ttl: float | None) -> None:
    if ttl is not None and not ttl > 0:
        raise ValueError(f"ttl must be positive seconds, not {ttl!r}")


def prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """``[low, high)`` of the keys starting with ``prefix``, so the primary key index answers.

    SQLite's default collation compares UTF-8 bytes, which orders as code points do.
    """
    if not prefix:
        return "", None
    last = ord(prefix[-1])
    if last == 0x10FFFF:
        return prefix, None  # nothing sorts after it in one code point; scan to the end
    return prefix, prefix[:-1] + chr(last + 1 if last + 1 not in range(0xD800, 0xE000) else 0xE000)


class SqlitePolicyStore:
    """A :class:`edgeward.ports.PolicyStore` in the SQLite file at ``path``.

    Use as ``async with SqlitePolicyStore(path) as store:`` or call :meth:`open` /
    :meth:`close`; opening creates and migrates the file. A store whose file cannot be opened
    raises :class:`~edgeward.ports.PolicyStoreError` from :meth:`open` and from every call until
    the file can be opened again (each call tries), so agents answer ``451`` meanwhile.
    """

    def __init__(
        self, path: Path, *, clock: Clock | None = None, busy_timeout: float = 5.0, max_batch: int = 128
    ) -> None:
        self.path = path
        self._clock = clock if clock is not None else SystemClock()
        self._db = StateStore(path, migrations=POLICY_MIGRATIONS, busy_timeout=busy_timeout)
        self._closed = False
        self._batch = BatchRunner(self._db, before=self._reconnect, max_batch=max_batch)
        # The point lookups' connection, used on the event loop only (module docstring).
        self._reader: sqlite3.Connection | None = None

    async def open(self) -> None:
        self._closed = False
        await asyncio.to_thread(self._connect)

    async def close(self) -> None:
        self._closed = True
        await self._batch.wait_idle()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        await asyncio.to_thread(self._db.close)

    def _connect(self) -> None:
        try:
            self._db.connect()
        except StateStoreError as exc:
            raise PolicyStoreError(f"policy store: {exc}") from None
        if self._reader is None:
            self._reader = _open_reader(self.path)

    async def __aenter__(self) -> SqlitePolicyStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self, fn: Callable[[sqlite3.Connection, float], T]) -> T:
        """``fn``, a point lookup: on the event loop if the reader can answer it at once."""
        reader = self._reader
        if reader is not None and not self._closed:
            try:
                return fn(reader, self._clock.now())
            except sqlite3.Error:
                pass  # locked, damaged or gone: the worker thread's way waits, reconnects, reports
        return await self._call(fn, write=False)

    async def _call(self, fn: Callable[[sqlite3.Connection, float], T], *, write: bool) -> T:
        if self._closed:
            raise PolicyStoreError(f"policy store {self.path}: closed")
        now = self._clock.now()
        try:
            return await self._batch.call(lambda conn: fn(conn, now), write=write)
        except PolicyStoreError:
            raise
        except StateStoreError as exc:
            raise PolicyStoreError(f"policy store: {exc}") from None
        except sqlite3.Error as exc:  # raised by commit/rollback paths StateStore does not wrap
            raise PolicyStoreError(f"policy store {self.path}: {exc}") from None

    def _reconnect(self) -> None:
        if not self._db.is_connected:
            # A file that could not be opened (corrupt, unreadable) is tried again on each
            # batch, so replacing or repairing it takes effect without a restart.
            self._connect()

    # -- keys --------------------------------------------------------------------------------

    async def get(self, key: str) -> str | None:
        check_name("key", key)

        def run(conn: sqlite3.Connection, now: float) -> str | None:
            row = conn.execute(
                "SELECT value FROM kv WHERE key = ? AND (expires IS NULL OR expires > ?)", (key, now)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._read(run)

    async def set(self, key: str, value: str, *, ttl: float | None = None) -> None:
        check_name("key", key)
        check_ttl(ttl)
        check_value(value)

        def run(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)",
                (key, value, None if ttl is None else now + ttl),
            )

        await self._call(run, write=True)

    async def add(self, key: str, value: str, *, ttl: float | None = None) -> bool:
        check_name("key", key)
        check_ttl(ttl)
        check_value(value)

        def run(conn: sqlite3.Connection, now: float) -> bool:
            # An expired row still occupies the key until purged: replace it as if it were absent.
            cur = conn.execute(
                "INSERT INTO kv (key, value, expires) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE"
                " SET value = excluded.value, expires = excluded.expires"
                " WHERE kv.expires IS NOT NULL AND kv.expires <= ?",
                (key, value, None if ttl is None else now + ttl, now),
            )
            return cur.rowcount == 1

        return await self._call(run, write=True)

    async def delete(self, key: str) -> bool:
        check_name("key", key)

        def run(conn: sqlite3.Connection, now: float) -> bool:
            cur = conn.execute(
                "DELETE FROM kv WHERE key = ? AND (expires IS NULL OR expires > ?)", (key, now)
            )
            conn.execute("DELETE FROM kv WHERE key = ?", (key,))
            return cur.rowcount == 1

        return await self._call(run, write=True)

    async def incr(self, key: str, *, window: float, amount: int = 1) -> int:
        check_name("key", key)
        check_ttl(window)
        return await self._call(lambda conn, now: _incr(conn, now, key, amount, window), write=True)

    async def incr_many(self, counts: Mapping[str, int], *, window: float) -> dict[str, int]:
        for key in counts:
            check_name("key", key)
        check_ttl(window)
        wanted = dict(counts)

        def run(conn: sqlite3.Connection, now: float) -> dict[str, int]:
            return {key: _incr(conn, now, key, amount, window) for key, amount in wanted.items()}

        return await self._call(run, write=True)

    async def scan(self, prefix: str, *, limit: int | None = None) -> list[StoredValue]:
        low, high = prefix_bounds(prefix)

        def run(conn: sqlite3.Connection, now: float) -> list[StoredValue]:
            rows = conn.execute(
                "SELECT key, value, expires FROM kv WHERE key >= ? AND (? IS NULL OR key < ?)"
                " AND (expires IS NULL OR expires > ?) ORDER BY key LIMIT ?",
                # A negative LIMIT is no limit in SQLite.
                (low, high, high, now, -1 if limit is None else max(limit, 0)),
            )
            return [StoredValue(str(k), str(v), e) for k, v, e in rows]

        return await self._call(run, write=False)

    # -- lists -------------------------------------------------------------------------------

    async def list_add(self, name: str, member: str, *, comment: str = "", ttl: float | None = None) -> None:
        check_name("list name", name)
        check_name("member", member)
        check_ttl(ttl)
        check_value(comment)

        def run(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO list_members (list, member, comment, added, expires)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, member, comment, now, None if ttl is None else now + ttl),
            )

        await self._call(run, write=True)

    async def list_remove(self, name: str, member: str) -> bool:
        check_name("list name", name)
        check_name("member", member)

        def run(conn: sqlite3.Connection, now: float) -> bool:
            cur = conn.execute(
                "DELETE FROM list_members WHERE list = ? AND member = ? AND (expires IS NULL OR expires > ?)",
                (name, member, now),
            )
            conn.execute("DELETE FROM list_members WHERE list = ? AND member = ?", (name, member))
            return cur.rowcount == 1

        return await self._call(run, write=True)

    async def list_get(self, name: str, member: str) -> ListEntry | None:
        check_name("list name", name)
        check_name("member", member)

        def run(conn: sqlite3.Connection, now: float) -> ListEntry | None:
            row = conn.execute(
                "SELECT member, comment, added, expires FROM list_members"
                " WHERE list = ? AND member = ? AND (expires IS NULL OR expires > ?)",
                (name, member, now),
            ).fetchone()
            return None if row is None else ListEntry(str(row[0]), str(row[1]), float(row[2]), row[3])

        return await self._read(run)

    async def list_get_many(self, name: str, members: Sequence[str]) -> list[ListEntry | None]:
        check_name("list name", name)
        for member in members:
            check_name("member", member)
        wanted = tuple(members)

        def run(conn: sqlite3.Connection, now: float) -> list[ListEntry | None]:
            if len(wanted) <= _MANY_PLACEHOLDERS:
                # One statement per count, each prepared once (the connection's statement cache):
                # 11-13 against 16-18 us for the JSON array's three members (bench/README.md).
                sql, params = _LIST_GET_MANY[len(wanted)], (name, *wanted, now)
            else:  # the members as one JSON array: a fixed statement, whatever their number
                sql, params = _LIST_GET_MANY_JSON, (name, json.dumps(wanted), now)
            rows = conn.execute(sql, params)
            found = {str(m): ListEntry(str(m), str(c), float(a), x) for m, c, a, x in rows}
            return [found.get(m) for m in wanted]

        if not wanted:
            return []
        return await self._read(run)

    async def list_members(self, name: str) -> list[ListEntry]:
        check_name("list name", name)

        def run(conn: sqlite3.Connection, now: float) -> list[ListEntry]:
            rows = conn.execute(
                "SELECT member, comment, added, expires FROM list_members"
                " WHERE list = ? AND (expires IS NULL OR expires > ?) ORDER BY member",
                (name, now),
            )
            return [ListEntry(str(m), str(c), float(a), e) for m, c, a, e in rows]

        return await self._call(run, write=False)

    async def list_version(self, name: str) -> str:
        check_name("list name", name)

        def run(conn: sqlite3.Connection, now: float) -> str:
            row = conn.execute("SELECT version FROM list_versions WHERE list = ?", (name,)).fetchone()
            return "never written" if row is None else str(row[0])

        return await self._read(run)

    async def purge_expired(self) -> int:
        def run(conn: sqlite3.Connection, now: float) -> int:
            a = conn.execute("DELETE FROM kv WHERE expires IS NOT NULL AND expires <= ?", (now,)).rowcount
            b = conn.execute(
                "DELETE FROM list_members WHERE expires IS NOT NULL AND expires <= ?", (now,)
            ).rowcount
            return int(a) + int(b)

        return await self._call(run, write=True)


def check_value(value: str) -> None:
    """Refuse a value that is not a string or is larger than MAX_VALUE_LENGTH."""
    if not isinstance(value, str):
        raise ValueError("values are strings (encode structured data as JSON)")
    if len(value) > MAX_VALUE_LENGTH:
        raise ValueError(f"value longer than {MAX_VALUE_LENGTH} characters")


def _open_reader(path: Path) -> sqlite3.Connection | None:
    """The read-only connection for point lookups on the event loop; None if it cannot be had
    (every lookup then goes to the worker thread)."""
    try:
        conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    except sqlite3.Error:
        return None
    try:
        conn.execute("PRAGMA query_only=ON")
    except sqlite3.Error:
        conn.close()
        return None
    return conn


def _incr(conn: sqlite3.Connection, now: float, key: str, amount: int, window: float) -> int:
    row = conn.execute(
        "SELECT value FROM kv WHERE key = ? AND (expires IS NULL OR expires > ?)", (key, now)
    ).fetchone()
    if row is None:
        conn.execute(
            "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)",
            (key, str(amount), now + window),
        )
        return amount
    count = _as_int(key, row[0]) + amount
    conn.execute("UPDATE kv SET value = ? WHERE key = ?", (str(count), key))
    return count


def _as_int(key: str, value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise ValueError(f"{key}: value is not an integer counter") from None
