"""The tests' clamd: :mod:`edgeward.testing.clamav` with a TCP port below the ephemeral range.

The database and the daemon live in the package so the anti-virus benchmark builds the same
ones; the tests also reach clamd over TCP, on a port from ``tests.ports``.
"""

from __future__ import annotations

from pathlib import Path

from edgeward.testing import clamav
from edgeward.testing.clamav import (
    CLAMD,
    EICAR,
    EICAR_BODY_NAME,
    EICAR_HASH_NAME,
    PATTERN_NAME,
    STREAM_MAX,
    TEST_PATTERN,
    Clamd,
    ping,
    wait_ping,
    write_database,
)
from tests.ports import free_port

__all__ = [
    "CLAMD",
    "EICAR",
    "EICAR_BODY_NAME",
    "EICAR_HASH_NAME",
    "PATTERN_NAME",
    "STREAM_MAX",
    "TEST_PATTERN",
    "Clamd",
    "ping",
    "start_clamd",
    "wait_ping",
    "write_database",
]


def start_clamd(root: Path, *, shared: bool = False) -> Clamd:
    """clamd on ``root/clamd.sock`` and a loopback TCP port; the caller stops it."""
    return clamav.start_clamd(root, shared=shared, port=free_port())
