"""Shared state that outlives a connection: user accounts now; reputation, greylisting and learned
spam statistics later.

``sqlite`` is the single-machine store (one file under ``DATA_DIR/state``); a store shared by
several gateways can offer the same operations later.
"""

from __future__ import annotations

from edgeward.state.sqlite import (
    DB_FILENAME,
    MIGRATIONS,
    Migration,
    StateStore,
    StateStoreError,
    default_db_path,
)

__all__ = [
    "DB_FILENAME",
    "MIGRATIONS",
    "Migration",
    "StateStore",
    "StateStoreError",
    "default_db_path",
]
