"""Listening sockets, connector selection and connection limits.

Sockets are bound before the process gives up root (``bind_sockets``), then served by asyncio.
Each accepted connection is matched to a receive connector the way Exchange does it: among
the connectors bound to the address and port the client reached, the one whose remote range
holding the client's address is the most specific wins. A client no connector serves is told
so and disconnected.

Security: connection counts are bounded per connector, per source address and per source
network (``421 4.3.2``), before any agent or TLS work is spent on the client; slots, stress and
eviction are ``server/stress.py``. Refusals are logged through a rate limit, so a flood of
them cannot flood the log. The number of open files is raised to what the connectors need.

Shutdown (``shutdown``): sessions waiting for a command get ``421 4.3.2`` at once; sessions in
DATA/BDAT get the grace period to finish their message, then ``421 4.3.2``; a session still
busy after that (an agent, the spool) is cancelled, quietly: a cancelled connection task is
never left for asyncio to report.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import os
import resource
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgeward.config.schema import ReceiveConnectorConfig, split_hostport
from edgeward.logs.ratelimit import RateLimitFilter
from edgeward.metrics import count_connection
from edgeward.server.guard import SHUTTING_DOWN, ReadGuard
from edgeward.server.session import Session, SessionEnv
from edgeward.server.shared_slots import SharedSlots
from edgeward.server.stress import Refusal, SlotTable
from edgeward.types import Peer, Reply

log = logging.getLogger("edgeward.listener")

TOO_MANY = Reply(
    421,
    "4.3.2",
    "The maximum number of concurrent connections has exceeded a limit, closing transmission channel",
)
NO_CONNECTOR = Reply(554, "5.7.1", "This server does not accept mail from your address")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def bind_sockets(
    connectors: Sequence[ReceiveConnectorConfig], *, reuse_port: bool = False, shared_only: bool = False
) -> list[socket.socket]:
    """Bind and listen on every distinct binding of every connector.

    ``reuse_port``: with SO_REUSEPORT, so each receiving process can have a socket of its own on
    the same binding (the kernel spreads connections over them; it lets only sockets of the
    same user join, and these are bound as root before the privilege drop). ``shared_only``:
    skip the bindings of connectors that offer AUTH, which the first receiving process alone
    serves, so the failed-AUTH throttle, kept in its memory, sees every attempt.
    """
    seen: set[tuple[str, int]] = set(auth_bindings(connectors)) if shared_only else set()
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
                if reuse_port and (host, port) not in auth_bindings(connectors):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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


def auth_bindings(connectors: Sequence[ReceiveConnectorConfig]) -> set[tuple[str, int]]:
    """The (host, port) bindings of connectors that offer AUTH."""
    return {split_hostport(b, 25) for c in connectors if c.auth_mechanisms for b in c.bindings}


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

    def __init__(
        self,
        env_factory: Callable[[], tuple[SessionEnv, ConnectorTable]],
        *,
        slots: SharedSlots | None = None,
    ) -> None:
        # The factory is asked at every connection, so a reload takes effect for new sessions
        # while running ones keep the configuration they started with.
        self._env_factory = env_factory
        self._servers: list[asyncio.Server] = []
        self._sessions: dict[asyncio.Task[None], ReadGuard | None] = {}
        self.slots = SlotTable(slots)  # ``slots``: counted with the other receiving processes
        self._ids = itertools.count(1)
        self._prefix = os.urandom(3).hex()
        self.log_limit = RateLimitFilter()
        self._stopping = False

    async def start(self, sockets: Sequence[socket.socket]) -> None:
        _, table = self._env_factory()
        raise_open_files(sum(c.max_connections for c in table.connectors) + 256)
        log.addFilter(self.log_limit)
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
        log.removeFilter(self.log_limit)
        if self.log_limit.suppressed():
            log.warning("%d repeated log lines were suppressed", self.log_limit.suppressed())

    async def drain(self, grace: float) -> None:
        """Shut the sessions down (see the module docstring); returns when all have ended."""
        self._stopping = True
        for guard in list(self._sessions.values()):
            if guard is not None:
                guard.interrupt(SHUTTING_DOWN)
        if not self._sessions:
            return
        _, pending = await asyncio.wait(set(self._sessions), timeout=grace)
        if not pending:
            return
        for task in pending:
            guard = self._sessions.get(task)
            if guard is not None:
                guard.interrupt(SHUTTING_DOWN, anytime=True)
        # Whoever is not reading is doing its own work (an agent, the spool), bounded by the
        # agent timeout; a few seconds more, then it is cut.
        _, pending = await asyncio.wait(pending, timeout=5)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions[task] = None
        try:
            await self._serve(reader, writer, task)
        except asyncio.CancelledError:
            # Only shutdown cancels a connection task; the session has closed its socket in
            # its own finally. Ending normally keeps asyncio from logging a traceback.
            writer.transport.abort()
        finally:
            self._sessions.pop(task, None)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task: asyncio.Task[None]
    ) -> None:
        remote = writer.get_extra_info("peername") or ("0.0.0.0", 0)
        local = writer.get_extra_info("sockname") or ("0.0.0.0", 0)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = Peer(str(_plain(remote[0])), int(remote[1]), str(_plain(local[0])), int(local[1]))
        env, table = self._env_factory()
        connector = table.select(peer.local_ip, peer.local_port, peer.ip)
        if connector is None or self._stopping:
            if connector is None:
                count_connection("none", "no_connector")
            else:
                count_connection(connector.name, "shutting_down")
            await _refuse(writer, NO_CONNECTOR if connector is None else SHUTTING_DOWN)
            return
        stressed = self.slots.stressed(connector)
        slot = self.slots.admit(connector, peer.ip)
        if isinstance(slot, Refusal):
            count_connection(connector.name, "limit_" + slot.limit.replace(" ", "_"))
            log.warning("connection limit (%s) reached on %s for %s", slot.limit, connector.name, peer.ip)
            await _refuse(writer, TOO_MANY)
            return
        if stressed:
            strict = connector.stress_max_protocol_errors
            connector = connector.model_copy(update={
                "max_protocol_errors": min(connector.max_protocol_errors, strict),
                "max_junk_commands": min(connector.max_junk_commands, strict),
            })  # fmt: skip
        guard = ReadGuard(connector, slot=slot)
        slot.guard = guard
        self._sessions[task] = guard
        try:
            session_id = f"{self._prefix}{next(self._ids):08x}"
            await Session(env, connector, reader, writer, peer, session_id, guard=guard).run()
        finally:
            self.slots.release(slot)


def raise_open_files(needed: int) -> None:
    """Raise the soft limit on open files towards ``needed`` (as far as the hard limit allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            log.warning("open files limited to %d; the connectors allow %d connections", hard, needed)


async def _refuse(writer: asyncio.StreamWriter, reply: Reply) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        writer.write(reply.to_bytes())
        await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()
