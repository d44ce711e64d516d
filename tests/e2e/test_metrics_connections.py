"""Connections by result against a real gateway over loopback: accepted, each limit, eviction.

The gateway runs in this process (``InProcessGateway``), so it counts in this process's memory;
the test reads deltas of ``edgeward_connections_total`` from the registry.
"""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from edgeward.metrics import REGISTRY
from tests.e2e.harness import InProcessGateway, free_port, gateway_config
from tests.e2e.smtpwire import Wire

pytestmark = pytest.mark.e2e

RESULTS = ("accepted", "limit_per_network", "limit_per_connector", "evicted")


def _counts() -> dict[str, float]:
    name = "edgeward_connections_total"
    return {
        r: REGISTRY.get_sample_value(name, {"connector": "internet", "result": r}) or 0.0 for r in RESULTS
    }


def test_limits_and_eviction_are_counted_by_result(workdir: Path) -> None:
    port = free_port()
    connector = {"max_connections": 3, "max_connections_per_network": 3}
    config = gateway_config(workdir, port=port, connector=connector)
    before = _counts()
    with InProcessGateway(config), ExitStack() as stack:
        idle = [stack.enter_context(Wire(port, "127.0.7.1")) for _ in range(3)]
        for w in idle:
            assert w.reply().startswith("220")
            assert w.command("EHLO idle.remote.test").startswith("250")
        with Wire(port, "127.0.7.2") as fourth:  # its /24 holds its three already
            assert fourth.reply().startswith("421 4.3.2")
        newcomer = stack.enter_context(Wire(port, "127.0.8.1"))  # the connector is full: evicts one
        assert newcomer.reply().startswith("220")
        with Wire(port, "127.0.7.1") as last:  # full, and the biggest holder cannot push others out
            assert last.reply().startswith("421 4.3.2")
        after = _counts()
    assert {r: after[r] - before[r] for r in RESULTS} == {
        "accepted": 4, "limit_per_network": 1, "limit_per_connector": 1, "evicted": 1,
    }  # fmt: skip


def test_a_failed_implicit_tls_handshake_is_counted(workdir: Path) -> None:
    port = free_port()
    config = gateway_config(workdir, port=port, connector={"implicit_tls": True})

    def failed() -> float:
        labels = {"connector": "internet", "result": "tls_failed"}
        return REGISTRY.get_sample_value("edgeward_connections_total", labels) or 0.0

    before = failed()
    with InProcessGateway(config):
        with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0)) as s:
            s.sendall(b"EHLO plain.remote.test\r\n")  # plain text where a TLS ClientHello belongs
            s.recv(1024)
        deadline = time.monotonic() + 10
        while failed() == before and time.monotonic() < deadline:
            time.sleep(0.05)
    assert failed() - before == 1
