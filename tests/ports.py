"""Listening ports for test servers, taken from outside the kernel's ephemeral range.

A port found by binding port 0 comes from the ephemeral range, so between the probe and the
server's own bind any outgoing connection (the gateway delivering, a client connecting) can
take it as its source port and the server fails with EADDRINUSE. Ports below that range are
never handed out as source ports, so a probe there stays valid until the server binds.
"""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path


def _low_range() -> range:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    # Stay above the well-known and commonly registered ports; leave the top to the kernel.
    return range(min(20000, low - 4000), low)


_RANGE = _low_range()
# Start at a per-process offset so two test runs on one machine rarely probe the same ports.
_NEXT = itertools.count((os.getpid() * 7919) % len(_RANGE))


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` nothing listens on or is connected from, below the ephemeral range."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(len(_RANGE)):
        port = _RANGE[next(_NEXT) % len(_RANGE)]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                # No SO_REUSEADDR: a port with connections still in TIME_WAIT is skipped too.
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port below {_RANGE.stop} on {host}")
