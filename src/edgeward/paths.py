"""Where the gateway keeps its files, derived from the configuration.

A module of its own, with no dependency beyond the configuration, because every process and
most commands need these paths, and the delivery process must be able to know them without
importing the agents (``runtime_policy``) that also use them.
"""

from __future__ import annotations

from pathlib import Path

from edgeward.config.schema import Config
from edgeward.directory.replica import replica_path

__all__ = ["content_state_path", "data_paths", "directory_replica_path"]


def data_paths(config: Config) -> dict[str, Path]:
    """The folders the gateway writes, by role."""
    return {
        "queue": config.resolve(Path("queue")),
        "log": config.resolve(config.logging.dir),
        "tls": config.resolve(config.tls.store),
        "state": config.resolve(Path("state")),
        "quarantine": config.resolve(Path("quarantine")),
    }


def directory_replica_path(config: Config) -> Path:
    """The SQLite file of the directory replica (``directory.replica``)."""
    return replica_path(data_paths(config)["state"])


def content_state_path(config: Config) -> Path:
    """The SQLite file holding the live (learned) spam model."""
    return data_paths(config)["state"] / "content-model.db"
