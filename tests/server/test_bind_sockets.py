from __future__ import annotations

import gc
import socket
import warnings

import pytest

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.server.listener import bind_sockets


def test_a_busy_binding_fails_and_closes_every_socket_it_opened() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        busy_port = busy.getsockname()[1]
        connectors = [
            ReceiveConnectorConfig(name="first", bindings=("127.0.0.1:0",)),
            ReceiveConnectorConfig(name="taken", bindings=(f"127.0.0.1:{busy_port}",)),
        ]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            with pytest.raises(OSError):
                bind_sockets(connectors)
            gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_each_distinct_binding_is_bound_once() -> None:
    connectors = [
        ReceiveConnectorConfig(name="a", bindings=("127.0.0.1:0", "127.0.0.2:0")),
        ReceiveConnectorConfig(name="b", bindings=("127.0.0.1:0",)),
    ]
    sockets = bind_sockets(connectors)
    try:
        assert sorted(s.getsockname()[0] for s in sockets) == ["127.0.0.1", "127.0.0.2"]
    finally:
        for s in sockets:
            s.close()
