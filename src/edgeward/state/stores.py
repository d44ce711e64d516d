"""The policy store a configuration asks for: the SQLite file or the shared Redis server.

``runtime`` and the ``edgeward antispam`` commands both call :func:`policy_store_for`, so a
command changes the same store the gateways read, whichever backend ``[policy_store]`` names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeward.config.policy_store import read_password
from edgeward.config.schema import Config
from edgeward.ports import Clock
from edgeward.state.policy import SqlitePolicyStore, default_policy_path

if TYPE_CHECKING:
    from edgeward.state.redis_policy import RedisPolicyStore

    # A name for annotations only: at run time the Redis client is imported by the gateways
    # that use it, not by every receiving process (5 MB of its memory).
    OwnedPolicyStore = SqlitePolicyStore | RedisPolicyStore

__all__ = ["OwnedPolicyStore", "policy_store_for"]


def policy_store_for(config: Config, *, clock: Clock | None = None) -> OwnedPolicyStore:
    """The configured store, not yet opened; raises ConfigError for an unusable password file."""
    cfg = config.policy_store
    if cfg.backend == "sqlite":
        return SqlitePolicyStore(default_policy_path(config.server.data_dir), clock=clock)
    from edgeward.state.redis_policy import RedisPolicyStore

    return RedisPolicyStore(
        cfg.url,
        password=read_password(cfg, config.resolve),
        prefix=cfg.prefix,
        timeout=cfg.timeout,
        max_connections=cfg.max_connections,
        ca_file=None if cfg.ca_file is None else str(config.resolve(cfg.ca_file)),
        clock=clock,
    )
