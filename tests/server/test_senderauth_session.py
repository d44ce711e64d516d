"""Golden transcript of the SPF and sender-auth agents in a real session over loopback.

An SPF fail set to reject is refused at MAIL with ``550 5.7.23`` and tracked with its finding;
the next transaction, a softfail, is accepted and stored with ``Received-SPF`` and our
``Authentication-Results`` on top, and a forged field under our authserv-id is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgeward.config.schema import Config, LoggingConfig, ReceiveConnectorConfig, ServerConfig
from edgeward.filters.agents.senderauth import SenderAuth
from edgeward.filters.agents.spf import SpfAgent
from edgeward.logs.tracking import TrackingLog, search
from edgeward.queue.spool import Spool
from edgeward.runtime_policy import build_policy
from edgeward.server.session import Session, SessionEnv
from edgeward.testing.dns import FakeResolver
from edgeward.types import Peer

HOST = "mx.test"
DNS = FakeResolver(
    {
        ("strict.example", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all"],
        ("soft.example", "TXT"): ["v=spf1 ~all"],
    }
)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[int, Path, Spool]]:
    tracking = TrackingLog(tmp_path / "log", LoggingConfig())
    spool = Spool(tmp_path / "queue", fsync=False)
    connector = ReceiveConnectorConfig(name="test", tls=False, tarpit_interval=0)
    config = Config(accepted_domains=("example.test",), server=ServerConfig(hostname=HOST))
    agents = [SpfAgent(DNS, HOST, fail_action="reject"), SenderAuth(DNS, HOST)]
    policy = build_policy(config, agents)
    env = SessionEnv(
        hostname=HOST, policy=policy, spool=spool, tracking=tracking,
        tls_contexts={}, handshake_timeout=5, on_queued=lambda _id: None,
    )  # fmt: skip

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip, peer_port = writer.get_extra_info("peername")[:2]
        await Session(env, connector, reader, writer, Peer(ip, peer_port), "S1").run()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1]), tmp_path / "log", spool
    server.close()
    await server.wait_closed()
    tracking.close()


MESSAGE = (
    b"Authentication-Results: mx.test; dmarc=pass header.from=soft.example\r\n"
    b"From: a@soft.example\r\nSubject: hello\r\nMessage-ID: <m1@soft.example>\r\n\r\nbody\r\n.\r\n"
)


async def test_spf_refusal_at_mail_then_a_stamped_message(gateway: tuple[int, Path, Spool]) -> None:
    port, log, spool = gateway
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    transcript = [await reader.readline()]
    for line in (
        b"EHLO client.test\r\n", b"MAIL FROM:<a@strict.example>\r\n", b"MAIL FROM:<a@soft.example>\r\n",
        b"RCPT TO:<user@example.test>\r\n", b"DATA\r\n", MESSAGE, b"QUIT\r\n",
    ):  # fmt: skip
        writer.write(line)
        await writer.drain()
        reply = await reader.readline()
        while reply[3:4] == b"-":  # the EHLO keywords
            reply = await reader.readline()
        transcript.append(reply)
    writer.close()
    await writer.wait_closed()
    assert [r[:3] for r in transcript] == [b"220", b"250", b"550", b"250", b"250", b"354", b"250", b"221"]
    assert transcript[2] == b"550 5.7.23 SPF validation failed\r\n"
    [refusal] = search(log, event="REJECT")
    assert refusal["decided_by"] == "agent spf"
    # The HELO name was checked at EHLO on its own (it publishes no SPF) and stays with the session.
    assert [f["name"] for f in refusal["findings"]] == ["SPF_HELO_NONE", "SPF_FAIL"]
    [receive] = search(log, event="RECEIVE")
    stored = spool.read_data(receive["msg_id"])
    head = stored.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"Received: from client.test")
    assert b"\r\nReceived-SPF: softfail\r\n\t(mx.test: soft.example discourages" in head
    assert b"\r\nAuthentication-Results: mx.test;\r\n\tspf=softfail smtp.mailfrom=soft.example;" in head
    # The forged field under our name is gone: ours is the only one and says dmarc=none.
    assert head.count(b"Authentication-Results:") == 1 and b"dmarc=pass" not in head
    assert b"dmarc=none" in head
