"""Listening sockets, connector selection and connection limits.

Sockets are bound before the process gives up root (``bind_sockets``), then served by asyncio.
Each accepted connection is matched to a receive connector the way Exchange does it: among
the connectors bound to the address and port the client reached, the one whose remote range
holding the client's address is the most specific wins. A client no connector serves is told
so and disconnected.

Security: connection counts are bounded per connector and per source address
(``421 4.3.2``), before any agent or TLS work is spent on the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgeward.config.schema import ReceiveConnectorConfig, split_hostport
from edgeward.server.session import Session, SessionEnv
from edgeward.types import Peer, Reply

log = logging.getLogger("edgeward.listener")

TOO_MANY = Reply(
    421,
    "4.3.2",
    "The maximum number of concurrent connections has exceeded a limit, closing transmission channel",
)
NO_CONNECTOR = Reply(554, "5.7.1", "This server does not accept mail from your address")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def bind_sockets(connectors: Sequence[ReceiveConnectorConfig]) -> list[socket.socket]:
    """Bind and listen on every distinct binding of every connector."""
    seen: set[tuple[str, int]] = set()
    sockets: list[socket.socket] = []
    try:
        for connector in connectors:
            for binding in connector.bindings:
                host, port = split_hostport(binding, 25)
                if (host, port) in seen:
                    continue
                seen.add((host, port))
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                # Owned by the list from here, so a failed bind below closes it with the rest.
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    # One socket per family: "::" must not also grab IPv4, which has its own binding.
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((host, port))
                sock.listen(1024)
                sock.setblocking(False)
    except OSError:
        for s in sockets:
            s.close()
        raise
    return sockets


@dataclass(frozen=True, slots=True)
class _Candidate:
    connector: ReceiveConnectorConfig
    network: Network
    host: ipaddress.IPv4Address | ipaddress.IPv6Address | None  # None: the wildcard address
    port: int


class ConnectorTable:
    """Finds the receive connector for a (local address, client address) pair."""

    def __init__(self, connectors: Sequence[ReceiveConnectorConfig]) -> None:
        self.connectors = tuple(connectors)
        self._candidates: list[_Candidate] = []
        for connector in connectors:
            for binding in connector.bindings:
                host, port = split_hostport(binding, 25)
                addr = ipaddress.ip_address(host)
                for r in connector.remote_ranges:
                    self._candidates.append(
                        _Candidate(connector, ipaddress.ip_network(r, strict=False),
                                   None if addr.is_unspecified else addr, port)
                    )  # fmt: skip

    def select(self, local_ip: str, local_port: int, remote_ip: str) -> ReceiveConnectorConfig | None:
        local = _plain(local_ip)
        remote = _plain(remote_ip)
        best: _Candidate | None = None
        for c in self._candidates:
            if c.port != local_port or (c.host is not None and c.host != local):
                continue
            if remote.version != c.network.version or remote not in c.network:
                continue
            # Most specific remote range first; a connector bound to the exact address beats a
            # wildcard binding with the same range.
            key = (c.network.prefixlen, c.host is not None)
            if best is None or key > (best.network.prefixlen, best.host is not None):
                best = c
        return best.connector if best else None


def _plain(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class Listener:
    """Accepts connections and runs one ``Session`` for each, within the limits."""

    def __init__(self, env_factory: Callable[[], tuple[SessionEnv, ConnectorTable]]) -> None:
        # The factory is asked at every connection, so a reload takes effect for new sessions
        # while running ones keep the configuration they started with.
        self._env_factory = env_factory
        self._servers: list[asyncio.Server] = []
        self._sessions: set[asyncio.Task[None]] = set()
        self._per_connector: Counter[str] = Counter()
        self._per_source: Counter[tuple[str, str]] = Counter()
        self._ids = itertools.count(1)
        self._prefix = os.urandom(3).hex()

    async def start(self, sockets: Sequence[socket.socket]) -> None:
        for sock in sockets:
            self._servers.append(await asyncio.start_server(self._accept, sock=sock, limit=1 << 20))

    @property
    def active_sessions(self) -> int:
        return len(self._sessions)

    async def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for running sessions, then cancel the rest."""
        if self._sessions:
            _, pending = await asyncio.wait(set(self._sessions), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._sessions.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        remote = writer.get_extra_info("peername") or ("0.0.0.0", 0)
        local = writer.get_extra_info("sockname") or ("0.0.0.0", 0)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = Peer(str(_plain(remote[0])), int(remote[1]), str(_plain(local[0])), int(local[1]))
        env, table = self._env_factory()
        connector = table.select(peer.local_ip, peer.local_port, peer.ip)
        if connector is None:
            await _refuse(writer, NO_CONNECTOR)
            return
        source = (connector.name, peer.ip)
        if (
            self._per_connector[connector.name] >= connector.max_connections
            or self._per_source[source] >= connector.max_connections_per_source
        ):
            log.warning("connection limit reached on %s for %s", connector.name, peer.ip)
            await _refuse(writer, TOO_MANY)
            return
        self._per_connector[connector.name] += 1
        self._per_source[source] += 1
        try:
            session_id = f"{self._prefix}{next(self._ids):08x}"
            await Session(env, connector, reader, writer, peer, session_id).run()
        finally:
            self._per_connector[connector.name] -= 1
            self._per_source[source] -= 1
            if self._per_source[source] <= 0:
                del self._per_source[source]


async def _refuse(writer: asyncio.StreamWriter, reply: Reply) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        writer.write(reply.to_bytes())
        await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()
