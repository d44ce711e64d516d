"""Golden transcripts of the connection filter in a real session over loopback.

The client (127.0.0.1) is listed by a DNSBL (the shipped fake resolver): RCPT to an ordinary
recipient gets the provider's 550 5.7.1, postmaster@ is accepted and the message queued, and the
refusal is tracked with sender, recipient and finding. Put on the live allow list (the shipped
memory store), the same client is exempt from the next connection on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from edgeward.config.schema import Config, LoggingConfig, ReceiveConnectorConfig
from edgeward.filters.agents.connection import ALLOW_LIST, ConnectionFilter, IpLists
from edgeward.filters.agents.relay import RelayControl
from edgeward.logs.tracking import TrackingLog, search
from edgeward.queue.spool import Spool
from edgeward.runtime_policy import build_policy
from edgeward.server.session import Session, SessionEnv
from edgeward.testing.dns import FakeResolver
from edgeward.testing.policystore import MemoryPolicyStore
from edgeward.types import Peer

CONFIG = Config.model_validate(
    {
        "accepted_domains": ["example.test"],
        "connection_filter": {
            "block_providers": [
                {"name": "testbl", "zone": "bl.test", "rejection_response": "{ip} is listed by {provider}"}
            ]
        },
    }
)
MESSAGE = b"From: a@remote.test\r\nSubject: hello\r\nMessage-ID: <m1@remote.test>\r\n\r\nbody\r\n.\r\n"

Serve = Callable[[], Awaitable[int]]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Serve, Path, MemoryPolicyStore, IpLists]]:
    tracking = TrackingLog(tmp_path / "log", LoggingConfig())
    spool = Spool(tmp_path / "queue", fsync=False)
    store = MemoryPolicyStore()
    lists = IpLists(store)
    dns = FakeResolver({("1.0.0.127.bl.test", "A"): ["127.0.0.2"]})
    agents = [
        ConnectionFilter(CONFIG.connection_filter, CONFIG.accepted_domains, lists=lists, dns=dns),
        RelayControl(CONFIG.accepted_domains),
    ]
    env = SessionEnv(
        hostname="mx.test", policy=build_policy(CONFIG, agents, allow_list=lists.allowed_ip), spool=spool,
        tracking=tracking, tls_contexts={}, handshake_timeout=5, on_queued=lambda _id: None,
    )  # fmt: skip
    connector = ReceiveConnectorConfig(name="internet", tls=False, tarpit_interval=0)
    count = 0

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        count += 1
        ip, port = writer.get_extra_info("peername")[:2]
        await Session(env, connector, reader, writer, Peer(ip, port), f"S{count}").run()

    server = await asyncio.start_server(session, "127.0.0.1", 0)

    async def serve() -> int:
        return int(server.sockets[0].getsockname()[1])

    yield serve, tmp_path / "log", store, lists
    server.close()
    await server.wait_closed()
    tracking.close()


async def _talk(port: int, *lines: bytes) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = [await reader.readline()]
    try:
        for line in lines:
            writer.write(line)
            replies.append(await reader.readline())
    finally:
        writer.close()
        await writer.wait_closed()
    return replies


SESSION = (
    b"HELO client.test\r\n", b"MAIL FROM:<s@remote.test>\r\n", b"RCPT TO:<user@example.test>\r\n",
    b"RCPT TO:<postmaster@example.test>\r\n", b"DATA\r\n", MESSAGE, b"QUIT\r\n",
)  # fmt: skip


async def test_a_listed_client_reaches_postmaster_only_and_the_refusal_is_tracked(
    gateway: tuple[Serve, Path, MemoryPolicyStore, IpLists],
) -> None:
    serve, log, _, _ = gateway
    replies = await _talk(await serve(), *SESSION)
    assert replies[2].startswith(b"250")  # MAIL: the refusal waits for RCPT
    assert replies[3] == b"550 5.7.1 127.0.0.1 is listed by testbl\r\n"
    assert replies[4].startswith(b"250 2.1.5")
    assert replies[6].startswith(b"250 2.0.0 OK queued as ")
    [refusal] = search(log, event="REJECT")
    assert refusal["detail"] == "at RCPT" and refusal["recipients"] == ["user@example.test"]
    assert refusal["sender"] == "s@remote.test" and refusal["decided_by"] == "agent connection-filter"
    assert [f["name"] for f in refusal["findings"]] == ["DNSBL_LISTED", "DNSBL_LISTED"]
    [receive] = search(log, event="RECEIVE")
    assert receive["recipients"] == ["postmaster@example.test"]


async def test_an_allow_list_entry_added_live_exempts_the_next_connection(
    gateway: tuple[Serve, Path, MemoryPolicyStore, IpLists],
) -> None:
    serve, log, store, lists = gateway
    await store.list_add(ALLOW_LIST, "127.0.0.0/8", comment="lab")
    replies = await _talk(await serve(), *SESSION)
    assert replies[3].startswith(b"250 2.1.5") and replies[4].startswith(b"250 2.1.5")
    assert lists.allowed_ip("127.0.0.1")  # the connection refreshed the exemptions' snapshot
    assert list(search(log, event="REJECT")) == []
    [receive] = search(log, event="RECEIVE")
    assert receive["decided_by"] == "exempt: client on the IP allow list"
