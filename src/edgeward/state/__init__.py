"""Shared state that outlives a connection, in SQLite files under ``DATA_DIR/state``.

``sqlite`` is the accounts database (``edgeward.db``) and the migration mechanism every file
here uses; ``policy`` is the anti-spam agents' :class:`edgeward.ports.PolicyStore`
(``policy.db``: reputation, greylisting, rate counters, lists). ``redis_policy`` is the same
port on a Redis server several gateways share; ``stores.policy_store_for`` picks one of the two
from ``[policy_store]``.
"""

from __future__ import annotations

from edgeward.state.policy import POLICY_MIGRATIONS, SqlitePolicyStore, default_policy_path
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
    "POLICY_MIGRATIONS",
    "Migration",
    "SqlitePolicyStore",
    "StateStore",
    "StateStoreError",
    "default_db_path",
    "default_policy_path",
]
