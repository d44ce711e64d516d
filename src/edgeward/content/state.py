"""Where the live (learning) content model is kept: a small Protocol and its SQLite store.

This module owns :class:`ModelStateStore`, the interface a shared store must offer (a Redis or
PostgreSQL store for several gateways can implement it later), and :class:`SqliteModelStateStore`,
the single-machine implementation (stdlib ``sqlite3``, WAL mode so readers never block the writer).

The store holds opaque blobs (the model's ``.npz`` bytes) under a name, each with a version that
grows by one per write. :meth:`ModelStateStore.put` takes the version the caller read: if another
writer got there first it raises :class:`StaleModelError` and the caller re-reads and retries
(optimistic concurrency: learning is rare, scoring is frequent, so nobody holds a lock).
:meth:`ModelStateStore.version` is the cheap question a running gateway asks every few seconds
to learn whether another process (``spam learn``, a quarantine release) taught the model.

Beside the blobs the same file keeps the learning ledger (``edgeward spam status``): how many
messages each path taught as ham or spam and when last (:meth:`SqliteModelStateStore.record_learned`),
and a few gauges the learning worker reports (queue length, messages dropped or skipped). They
live with the model because they describe it: copying the file copies its history.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from edgeward.config.ownership import hand_over, make_private_dirs, service_owner

__all__ = ["LearnedCount", "ModelStateStore", "SqliteModelStateStore", "StaleModelError", "StoredModel"]


class StaleModelError(RuntimeError):
    """The stored model changed since it was read; re-read, re-apply, retry."""


@dataclass(frozen=True)
class StoredModel:
    blob: bytes
    version: int


@dataclass(frozen=True)
class LearnedCount:
    """How many messages one learning path taught as ``label`` (ham or spam), and when last."""

    path: str
    label: str
    count: int
    last_at: float


@runtime_checkable
class ModelStateStore(Protocol):
    def get(self, name: str) -> StoredModel | None:
        """The current blob and version of ``name``, or ``None`` if never stored."""
        ...

    def put(self, name: str, blob: bytes, expected_version: int) -> int:
        """Store ``blob`` if the current version is ``expected_version`` (0: absent); new version."""
        ...

    def version(self, name: str) -> int:
        """The current version of ``name`` (0: absent), without reading the blob."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS content_model (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    blob BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS learned (
    path TEXT NOT NULL,
    label TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (path, label)
);
CREATE TABLE IF NOT EXISTS learning_gauge (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    at REAL NOT NULL
)
"""


class SqliteModelStateStore:
    """:class:`ModelStateStore` in one SQLite file (created with mode 0600 if absent)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            make_private_dirs(self.path.parent, owner=service_owner(self.path.parent))
            # Learned statistics reveal what the site's mail looks like: owner-only.
            self.path.touch(mode=0o600)
        # Made by root (spam learn, quarantine release): the gateway must still write it.
        # SQLite gives its -wal and -shm files the owner of the database file.
        hand_over(self.path)
        self._conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def get(self, name: str) -> StoredModel | None:
        row = self._conn.execute("SELECT blob, version FROM content_model WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        return StoredModel(bytes(row[0]), int(row[1]))

    def version(self, name: str) -> int:
        row = self._conn.execute("SELECT version FROM content_model WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def put(self, name: str, blob: bytes, expected_version: int) -> int:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT version FROM content_model WHERE name = ?", (name,)).fetchone()
            current = 0 if row is None else int(row[0])
            if current != expected_version:
                raise StaleModelError(f"model {name!r} is at version {current}, not {expected_version}")
            conn.execute(
                "INSERT INTO content_model (name, version, blob) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET version = excluded.version, blob = excluded.blob",
                (name, current + 1, sqlite3.Binary(blob)),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return current + 1

    def record_learned(self, path: str, is_spam: bool, at: float, count: int = 1) -> None:
        """Count ``count`` messages taught by ``path`` (reply, report, manual ...) at ``at``."""
        self._conn.execute(
            "INSERT INTO learned (path, label, count, last_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(path, label) DO UPDATE SET count = count + excluded.count, "
            "last_at = excluded.last_at",
            (path, "spam" if is_spam else "ham", count, at),
        )

    def learned_counts(self) -> list[LearnedCount]:
        rows = self._conn.execute("SELECT path, label, count, last_at FROM learned ORDER BY path, label")
        return [LearnedCount(str(p), str(lb), int(n), float(t)) for p, lb, n, t in rows]

    def set_gauges(self, values: dict[str, int], at: float) -> None:
        """Replace the named gauges (the learning worker's queue length, drops ...)."""
        self._conn.executemany(
            "INSERT INTO learning_gauge (name, value, at) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value, at = excluded.at",
            [(name, value, at) for name, value in values.items()],
        )

    def gauges(self) -> dict[str, tuple[int, float]]:
        rows = self._conn.execute("SELECT name, value, at FROM learning_gauge ORDER BY name")
        return {str(n): (int(v), float(t)) for n, v, t in rows}

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SqliteModelStateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
