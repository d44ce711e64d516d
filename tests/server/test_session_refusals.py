"""Refusals at CONNECT and HELO are tracked like those at MAIL: a real session over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgeward.config.schema import Config, LoggingConfig, ReceiveConnectorConfig
from edgeward.filters.base import Stage, StageContext
from edgeward.logs.tracking import TrackingLog, search
from edgeward.queue.spool import Spool
from edgeward.runtime_policy import build_policy
from edgeward.server.session import Session, SessionEnv
from edgeward.types import Finding, Outcome, Peer, Reply


class Refuser:
    """Refuses every connection once told to, and the HELO name bad.test."""

    name = "refuser"
    stages = frozenset({Stage.CONNECT, Stage.HELO})
    fail_open = False

    def __init__(self) -> None:
        self.refuse_connect = False

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        if stage is Stage.CONNECT and self.refuse_connect:
            return Outcome.reject(Reply(554, "5.7.1", "Go away"), Finding("TEST", self.name))
        if stage is Stage.HELO and ctx.session.helo == "bad.test":
            return Outcome.reject(Reply(550, "5.7.1", "Bad HELO"), Finding("TEST", self.name))
        return Outcome.proceed()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[int, Refuser, Path]]:
    refuser = Refuser()
    tracking = TrackingLog(tmp_path / "log", LoggingConfig())
    env = SessionEnv(
        hostname="mx.test", policy=build_policy(Config(), [refuser]),
        spool=Spool(tmp_path / "queue", fsync=False),
        tracking=tracking, tls_contexts={}, handshake_timeout=5, on_queued=lambda _id: None,
    )  # fmt: skip
    connector = ReceiveConnectorConfig(name="test", tls=False, tarpit_interval=0)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip, port = writer.get_extra_info("peername")[:2]
        await Session(env, connector, reader, writer, Peer(ip, port), "S1").run()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with srv:
        yield srv.sockets[0].getsockname()[1], refuser, tmp_path / "log"
    tracking.close()


async def _talk(port: int, *lines: bytes) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = [await reader.readline()]
    for line in lines:
        writer.write(line)
        replies.append(await reader.readline())
    writer.close()
    await writer.wait_closed()
    return replies


async def test_connect_and_helo_refusals_are_tracked(server: tuple[int, Refuser, Path]) -> None:
    port, refuser, log = server
    replies = await _talk(port, b"HELO bad.test\r\n", b"QUIT\r\n")
    assert replies[1].startswith(b"550 5.7.1 Bad HELO")
    refuser.refuse_connect = True
    assert (await _talk(port, b"QUIT\r\n"))[0].startswith(b"554 5.7.1 Go away")
    helo, connect = search(log, event="REJECT")
    assert (helo["detail"], helo["reply"]) == ("at HELO", "550 5.7.1 Bad HELO")
    assert (connect["detail"], connect["reply"]) == ("at CONNECT", "554 5.7.1 Go away")
    assert {helo["client_ip"], connect["client_ip"]} == {"127.0.0.1"} and connect["connector"] == "test"
