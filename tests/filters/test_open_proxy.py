"""The open-proxy test against fake proxies the test starts on loopback (real sockets).

An HTTP proxy that honours CONNECT and a SOCKS5 proxy that needs no authentication both reach
the gateway's banner and are found open; a proxy that answers 403, and a port where nothing
listens, are not. The result is cached per address, so a client is tested once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import struct
from collections.abc import AsyncIterator

import pytest

from edgeward.config.schema import ReceiveConnectorConfig, ReputationConfig
from edgeward.filters.agents.reputation import SenderReputation, rating
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.net.openproxy import probe
from edgeward.testing.dns import FakeResolver
from edgeward.testing.policystore import MemoryPolicyStore
from edgeward.types import Peer
from tests.ports import free_port


class Proxies:
    """A banner server standing in for the gateway, and proxies in front of it."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.connections = 0

    async def start(self, handler: object) -> int:
        port = free_port()
        self.servers.append(await asyncio.start_server(handler, "127.0.0.1", port))  # type: ignore[arg-type]
        return port

    async def banner(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.test ESMTP\r\n")
        with contextlib.suppress(ConnectionError):
            await reader.readline()
        writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, port)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(4096):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))

    async def http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        _method, target, _ = (await reader.readline()).decode().split(" ")
        while await reader.readline() not in (b"\r\n", b""):
            pass
        host, _, port = target.rpartition(":")
        writer.write(b"HTTP/1.0 200 Connection established\r\n\r\n")
        await self._pipe(reader, writer, host.strip("[]"), int(port))

    async def closed_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readline()
        writer.write(b"HTTP/1.0 403 Forbidden\r\n\r\n")
        writer.close()

    async def socks5(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readexactly(3)
        writer.write(b"\x05\x00")
        head = await reader.readexactly(4)
        host = str(ipaddress.ip_address(await reader.readexactly(4 if head[3] == 1 else 16)))
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        writer.write(b"\x05\x00\x00\x01" + bytes(4) + b"\x00\x00")
        await self._pipe(reader, writer, host, port)


@pytest.fixture
async def proxies() -> AsyncIterator[Proxies]:
    p = Proxies()
    yield p
    for server in p.servers:
        server.close()
        await server.wait_closed()


async def test_http_and_socks5_open_proxies_are_found_closed_ones_are_not(proxies: Proxies) -> None:
    gateway = ("127.0.0.1", await proxies.start(proxies.banner))
    http, socks = await proxies.start(proxies.http), await proxies.start(proxies.socks5)
    refusing, nothing = await proxies.start(proxies.closed_http), free_port()
    assert (
        await probe("127.0.0.1", gateway, http_ports=[nothing, http], limit=10)
        == f"http CONNECT on port {http}"
    )
    assert await probe("127.0.0.1", gateway, socks_ports=[socks], limit=10) == f"socks5 on port {socks}"
    assert (
        await probe("127.0.0.1", gateway, http_ports=[refusing, nothing], socks_ports=[nothing], limit=10)
        == ""
    )


async def test_the_agent_reports_an_open_proxy_once_per_address_and_it_rates_9(proxies: Proxies) -> None:
    gateway_port = await proxies.start(proxies.banner)
    http = await proxies.start(proxies.http)
    config = ReputationConfig(open_proxy_test=True, open_proxy_http_ports=(http,), open_proxy_socks_ports=())
    agent = SenderReputation(MemoryPolicyStore(), FakeResolver(), config, probe=probe)
    peer = Peer("127.0.0.1", 40000, local_ip="127.0.0.1", local_port=gateway_port)
    ctx = StageContext(Stage.CONNECT, SessionInfo("S1", peer, ReceiveConnectorConfig(name="internet")))
    for _ in range(2):
        outcome = await agent.check(Stage.CONNECT, ctx)
        assert [(f.name, f.detail) for f in outcome.findings] == [
            ("OPEN_PROXY", f"http CONNECT on port {http}")
        ]
    assert proxies.connections == 1
    assert rating(20, 0, 0, 0, 0, proxy=1) == 9


async def test_the_test_is_off_by_default(proxies: Proxies) -> None:
    http = await proxies.start(proxies.http)
    agent = SenderReputation(
        MemoryPolicyStore(), FakeResolver(), ReputationConfig(open_proxy_http_ports=(http,))
    )
    peer = Peer("127.0.0.1", 40000, local_ip="127.0.0.1", local_port=http)
    ctx = StageContext(Stage.CONNECT, SessionInfo("S1", peer, ReceiveConnectorConfig(name="internet")))
    assert (await agent.check(Stage.CONNECT, ctx)).findings == ()
    assert proxies.connections == 0
