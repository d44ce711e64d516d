"""Protocol analysis, sender reputation and greylisting in a real session over loopback.

The agents are built by ``runtime`` as the gateway builds them, over a real SQLite policy store
whose clock is a ``FakeClock``, so the greylisting window is crossed without waiting:

- a client that talks during the greet pause is reported as pregreeting, one that waits is not;
- pipelining after HELO (never offered) is reported, pipelining after EHLO is not;
- a new triplet gets ``451 4.7.1`` (tracked with its finding), its retry five minutes later is
  accepted and queued.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from edgeward.config.schema import Config, LoggingConfig, ReceiveConnectorConfig
from edgeward.logs.tracking import TrackingLog, search
from edgeward.queue.spool import Spool
from edgeward.runtime_policy import build_agents, build_policy
from edgeward.server.session import Session, SessionEnv
from edgeward.state.policy import SqlitePolicyStore
from edgeward.testing.clock import FakeClock
from edgeward.testing.dns import FakeResolver
from edgeward.types import Peer

MESSAGE = b"From: a@remote.test\r\nSubject: hi\r\nMessage-ID: <m@remote.test>\r\n\r\nbody\r\n.\r\n"
CONFIG = Config.model_validate(
    {
        "accepted_domains": ["example.test"],
        "agents": {"content_filter": {"enabled": False}, "greylist": {"enabled": True}},
    }
)

Serve = Callable[[float], Awaitable[int]]


class Gateway:
    def __init__(self, tmp: Path) -> None:
        self.log = tmp / "log"
        self.clock = FakeClock()
        self.store = SqlitePolicyStore(tmp / "policy.db", clock=self.clock)
        self.spool = Spool(tmp / "queue", fsync=False)
        self.tracking = TrackingLog(self.log, LoggingConfig())
        self.servers: list[asyncio.Server] = []

    async def serve(self, greet_pause: float = 0.0, config: Config = CONFIG) -> int:
        connector = ReceiveConnectorConfig(name="test", tls=False, tarpit_interval=0, greet_pause=greet_pause)
        agents = build_agents(
            config, self.spool, policy_store=self.store, dns=FakeResolver(), clock=self.clock
        )
        env = SessionEnv(
            hostname="mx.test", policy=build_policy(config, agents), spool=self.spool, tracking=self.tracking,
            tls_contexts={}, handshake_timeout=5, on_queued=lambda _id: None,
        )  # fmt: skip

        async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ip, port = writer.get_extra_info("peername")[:2]
            await Session(env, connector, reader, writer, Peer(ip, port), "S1").run()

        server = await asyncio.start_server(session, "127.0.0.1", 0)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def findings(self, event: str) -> list[list[str]]:
        return [[f["name"] for f in r["findings"]] for r in search(self.log, event=event)]


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    gateway = Gateway(tmp_path)
    await gateway.store.open()
    yield gateway
    for server in gateway.servers:
        server.close()
        await server.wait_closed()
    gateway.tracking.close()
    await gateway.store.close()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def reply(self) -> bytes:
        """One whole reply (the last line of a multi-line one)."""
        while True:
            line = await self.reader.readline()
            if len(line) < 4 or line[3:4] != b"-":
                return line

    async def send(self, data: bytes, replies: int = 1) -> list[bytes]:
        self.writer.write(data)
        return [await self.reply() for _ in range(replies)]

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def _deliver(
    client: Client, greeting: bytes = b"EHLO client.test\r\n", rcpt: bytes = b"user"
) -> list[bytes]:
    replies = await client.send(greeting)
    replies += await client.send(b"MAIL FROM:<a@remote.test>\r\n")
    replies += await client.send(b"RCPT TO:<" + rcpt + b"@example.test>\r\n")
    if replies[-1].startswith(b"250"):
        replies += await client.send(b"DATA\r\n")
        replies += await client.send(MESSAGE)
    replies += await client.send(b"QUIT\r\n")
    await client.close()
    return replies


async def test_a_client_talking_in_the_greet_pause_is_pregreeting(gw: Gateway) -> None:
    port = await gw.serve(greet_pause=1.0)
    hasty = await Client.connect(port)
    hasty.writer.write(b"EHLO hasty.test\r\n")  # before any banner
    assert (await hasty.reply()).startswith(b"220 ")
    # Its early bytes were kept: the EHLO is answered after the banner, and the session goes on.
    assert (await hasty.reply()).startswith(b"250 ")
    replies = await _deliver(hasty, greeting=b"NOOP\r\n", rcpt=b"postmaster")
    assert replies[1].startswith(b"250") and replies[2].startswith(b"451 4.7.1 ")
    polite = await Client.connect(port)
    assert (await polite.reply()).startswith(b"220 ")
    await _deliver(polite, rcpt=b"postmaster")
    [first, second] = gw.findings("REJECT")  # both greylisted at RCPT, with the session's findings
    assert "PROTOCOL_PREGREET" in first and "PROTOCOL_PREGREET" not in second


async def test_pipelining_after_helo_is_reported_after_ehlo_it_is_not(gw: Gateway) -> None:
    config = Config.model_validate(
        {"accepted_domains": ["example.test"], "agents": {"content_filter": {"enabled": False}}}
    )
    port = await gw.serve(config=config)
    for greeting in (b"HELO old.test\r\n", b"EHLO new.test\r\n"):
        client = await Client.connect(port)
        await client.reply()
        await client.send(greeting)
        replies = await client.send(
            b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<user@example.test>\r\n", replies=2
        )
        assert [r[:3] for r in replies] == [b"250", b"250"]
        assert (await client.send(b"DATA\r\n"))[0].startswith(b"354")
        assert (await client.send(MESSAGE))[0].startswith(b"250 2.0.0 OK queued")
        await client.send(b"QUIT\r\n")
        await client.close()
    helo, ehlo = gw.findings("RECEIVE")
    assert "PROTOCOL_PIPELINING" in helo and "PROTOCOL_PIPELINING" not in ehlo


async def test_greylisting_defers_a_new_triplet_and_accepts_its_retry(gw: Gateway) -> None:
    port = await gw.serve()
    first = await _deliver(await Client.connect(port))
    assert first[3] == b"451 4.7.1 Greylisted, please try again later\r\n"
    gw.clock.advance(120)
    too_soon = await _deliver(await Client.connect(port))
    assert too_soon[3].startswith(b"451 4.7.1 ")
    gw.clock.advance(180)
    retry = await _deliver(await Client.connect(port))
    assert retry[3].startswith(b"250 2.1.5") and retry[5].startswith(b"250 2.0.0 OK queued as ")
    assert len(gw.spool.list()) == 1
    [received] = gw.findings("RECEIVE")
    assert "GREYLIST_PASSED" in received
