"""Sender reputation's history through a running gateway: counted after the reply
(``filters.afterwards``), yet every accepted message is in it, including those of a session that
ends just before the gateway stops."""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

import pytest

from edgeward.state.policy import SqlitePolicyStore, default_policy_path
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e

MESSAGE = b"From: a@sender.test\r\nTo: user@example.test\r\nSubject: hello\r\n\r\nLunch at noon?\r\n"


def _send(port: int, source: str, count: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30) as c:
        c.ehlo("client.sender.test")
        for _ in range(count):
            assert c.sendmail("a@sender.test", ["user@example.test"], MESSAGE) == {}


async def _count(path: Path, ip: str) -> str | None:
    async with SqlitePolicyStore(path) as store:
        return await store.get(f"rep:{ip}:n")


def test_every_message_is_counted_and_a_stop_waits_for_the_counts(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = gateway_config(workdir, port=port, sink_port=sink.port)
    with InProcessGateway(config) as running:
        _send(port, "127.0.0.2", 3)

        async def settled() -> str | None:
            for _ in range(200):  # the counts land shortly after the replies
                found = await _count(default_policy_path(workdir), "127.0.0.2")
                if found == "3":
                    return found
                await asyncio.sleep(0.05)
            return await _count(default_policy_path(workdir), "127.0.0.2")

        assert running.call(settled()) == "3"
        # The last messages before a stop: the stop drains their lessons before closing the store.
        _send(port, "127.0.0.3", 5)
    assert asyncio.run(_count(default_policy_path(workdir), "127.0.0.3")) == "5"
    assert len(sink.wait_for(8)) == 8
