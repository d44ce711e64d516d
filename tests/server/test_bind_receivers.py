"""Sockets for several receiving processes: SO_REUSEPORT copies of every binding except those of
connectors that offer AUTH, which only the first process serves (its throttle sees every try)."""

from __future__ import annotations

import socket

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.server.listener import bind_sockets
from tests.ports import free_port


def test_other_receivers_get_reuseport_copies_of_all_but_the_auth_bindings() -> None:
    mx, submission = free_port(), free_port()
    connectors = [
        ReceiveConnectorConfig(name="internet", bindings=(f"127.0.0.1:{mx}",)),
        ReceiveConnectorConfig(
            name="submission", bindings=(f"127.0.0.1:{submission}",), auth_mechanisms=("PLAIN",),
            permission_groups=("users",),
        ),
    ]  # fmt: skip
    first = bind_sockets(connectors, reuse_port=True)
    other = bind_sockets(connectors, reuse_port=True, shared_only=True)
    try:
        assert sorted(s.getsockname()[1] for s in first) == sorted((mx, submission))
        assert [s.getsockname()[1] for s in other] == [mx]
        by_port = {s.getsockname()[1]: s for s in first}
        assert by_port[mx].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert by_port[submission].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
    finally:
        for s in (*first, *other):
            s.close()
