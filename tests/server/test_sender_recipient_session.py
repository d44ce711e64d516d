"""The tarpit and the sender and recipient agents in a real session over loopback.

- an unknown recipient of an accepted domain gets ``550 5.1.1`` only after the connector's
  tarpit: the injected sleep is asked for exactly ``tarpit_interval`` and the reply comes after
  it (ordering, not a stopwatch);
- a known recipient and a temporary refusal (``451``) are not tarpitted; a relay refusal is;
- a blocked recipient gets ``550 5.1.1`` too (nothing for a harvester to tell apart), and a
  recipient's blocked sender refuses that recipient alone with ``550 5.7.1``;
- a sender blocked in stamp mode is accepted, and its MAIL finding is weighed in the verdict
  at end of data and tracked with the message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from edgeward.config.schema import (
    Config,
    LoggingConfig,
    PolicyConfig,
    ReceiveConnectorConfig,
    SenderFilterConfig,
)
from edgeward.filters.agents.recipient_filter import FileRecipients, LocalRecipients, RecipientFilter
from edgeward.filters.agents.relay import RelayControl
from edgeward.filters.agents.safe_senders import BLOCKED_LIST, RecipientBlockedSenders
from edgeward.filters.agents.sender_filter import SenderFilter
from edgeward.filters.base import Agent
from edgeward.logs.tracking import TrackingLog, search
from edgeward.queue.spool import Spool
from edgeward.runtime_policy import build_policy
from edgeward.server.session import Session, SessionEnv
from edgeward.testing.policystore import MemoryPolicyStore
from edgeward.types import Peer

TARPIT = 0.25
PLAIN = Config(accepted_domains=("example.test",))
Serve = Callable[..., Awaitable[int]]


class Transcript:
    """One ordered record of what the server slept and what the client read."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def sleep(self, delay: float) -> None:
        self.events.append(f"tarpit {delay}")

    async def talk(self, port: int, *lines: bytes) -> list[bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        replies = [await reader.readline()]
        try:
            for line in lines:
                writer.write(line)
                reply = await reader.readline()
                self.events.append(f"reply {reply[:3].decode()}")
                replies.append(reply)
        finally:
            writer.close()
            await writer.wait_closed()
        return replies


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Serve, Transcript]]:
    """A server for the agents given; the transcript also records the tarpit's sleeps."""
    tracking = TrackingLog(tmp_path / "log", LoggingConfig())
    spool = Spool(tmp_path / "queue", fsync=False)
    transcript = Transcript()
    servers: list[asyncio.Server] = []
    connector = ReceiveConnectorConfig(name="internet", tls=False, tarpit_interval=TARPIT)

    async def serve(agents: list[Agent], config: Config = PLAIN) -> int:
        env = SessionEnv(
            hostname="mx.test", policy=build_policy(config, agents), spool=spool, tracking=tracking,
            tls_contexts={}, handshake_timeout=5, on_queued=lambda _id: None, sleep=transcript.sleep,
        )  # fmt: skip

        async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ip, port = writer.get_extra_info("peername")[:2]
            await Session(env, connector, reader, writer, Peer(ip, port), "S1").run()

        server = await asyncio.start_server(session, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield serve, transcript
    for server in servers:
        server.close()
        await server.wait_closed()
    tracking.close()


def _validation() -> list[Agent]:
    known = FileRecipients(frozenset({"user@example.test"}))
    return [RelayControl(("example.test",)), LocalRecipients(("example.test",), known)]


async def test_an_unknown_recipient_gets_550_5_1_1_after_the_tarpit(served: tuple[Serve, Transcript]) -> None:
    serve, transcript = served
    port = await serve(_validation())
    replies = await transcript.talk(
        port, b"HELO c.test\r\n", b"MAIL FROM:<s@remote.test>\r\n", b"RCPT TO:<user@example.test>\r\n",
        b"RCPT TO:<nobody@example.test>\r\n", b"QUIT\r\n",
    )  # fmt: skip
    assert replies[4].startswith(b"550 5.1.1 ")
    # EHLO, MAIL, the known RCPT answered without delay; the unknown one after the tarpit.
    assert transcript.events == [
        "reply 250", "reply 250", "reply 250", f"tarpit {TARPIT}", "reply 550", "reply 221",
    ]  # fmt: skip


async def test_a_relay_refusal_is_tarpitted_and_a_temporary_one_is_not(
    served: tuple[Serve, Transcript],
) -> None:
    serve, transcript = served
    store = MemoryPolicyStore()
    store.break_down()
    port = await serve([RelayControl(("example.test",)), RecipientFilter((), store)])
    replies = await transcript.talk(
        port, b"HELO c.test\r\n", b"MAIL FROM:<s@remote.test>\r\n", b"RCPT TO:<u@elsewhere.test>\r\n",
        b"RCPT TO:<user@example.test>\r\n",
    )  # fmt: skip
    assert replies[3].startswith(b"550 5.7.1 ") and replies[4].startswith(b"451 4.3.0 ")
    assert transcript.events == ["reply 250", "reply 250", f"tarpit {TARPIT}", "reply 550", "reply 451"]


async def test_blocked_recipients_and_a_recipients_blocked_sender(served: tuple[Serve, Transcript]) -> None:
    serve, transcript = served
    store = MemoryPolicyStore()
    await store.list_add(BLOCKED_LIST, "boss@example.test @pest.test")
    port = await serve(
        [RelayControl(("example.test",)), RecipientFilter(("old@example.test",), store),
         RecipientBlockedSenders(store)]
    )  # fmt: skip
    replies = await transcript.talk(
        port, b"HELO c.test\r\n", b"MAIL FROM:<ann@pest.test>\r\n", b"RCPT TO:<Old@example.test>\r\n",
        b"RCPT TO:<boss@example.test>\r\n", b"RCPT TO:<user@example.test>\r\n",
    )  # fmt: skip
    assert replies[3].startswith(b"550 5.1.1 User unknown")
    assert replies[4].startswith(b"550 5.7.1 Sender blocked by the recipient")
    assert replies[5].startswith(b"250 ")


async def test_a_stamped_blocked_sender_is_weighed_at_end_of_data(
    served: tuple[Serve, Transcript], tmp_path: Path
) -> None:
    serve, transcript = served
    stamp = SenderFilter(SenderFilterConfig(blocked_domains=("pest.test",), action="stamp"))
    config = Config(accepted_domains=("example.test",), policy=PolicyConfig(stamp=5))
    port = await serve([stamp, RelayControl(("example.test",))], config)
    replies = await transcript.talk(
        port, b"HELO c.test\r\n", b"MAIL FROM:<ann@pest.test>\r\n", b"RCPT TO:<user@example.test>\r\n",
        b"DATA\r\n", b"From: ann@pest.test\r\nSubject: hi\r\n\r\nhello\r\n.\r\n",
    )  # fmt: skip
    assert [r[:3] for r in replies[1:]] == [b"250", b"250", b"250", b"354", b"250"]
    [received] = search(tmp_path / "log", event="RECEIVE")
    assert received["decided_by"] == "threshold stamp 5 (total 6)"
    assert [(f["name"], f["stage"]) for f in received["findings"]] == [("SENDER_BLOCKED", "mail")]
