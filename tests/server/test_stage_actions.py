"""Actions mean the same at every stage, and every refusal is tracked with its findings.

A real session over loopback with one agent that acts at a chosen stage:
- DISCONNECT sends the agent's own reply and closes, at CONNECT, HELO, MAIL, RCPT, DATA and EOD;
- TEMPFAIL and REJECT refuse the command and keep the connection (NOOP is still answered);
- each refusal is one tracking REJECT naming the stage, the agent, and the findings so far (a
  CONNECT finding is still there at RCPT);
- the core's own refusal of a MAIL or RCPT (a malformed address, a declared SIZE over the limit)
  is tracked too, with ``decided_by = "protocol"``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from edgeward.config.schema import Config, LoggingConfig, ReceiveConnectorConfig
from edgeward.filters.base import Agent, Stage, StageContext
from edgeward.logs.tracking import TrackingLog, search
from edgeward.queue.spool import Spool
from edgeward.runtime_policy import build_policy
from edgeward.server.session import Session, SessionEnv
from edgeward.types import Action, Finding, Outcome, Peer, Reply

MESSAGE = b"From: a@remote.test\r\nSubject: hi\r\nMessage-ID: <s1@remote.test>\r\n\r\nbody\r\n.\r\n"
LINES = (
    b"HELO client.test\r\n", b"MAIL FROM:<s@remote.test>\r\n", b"RCPT TO:<user@example.test>\r\n",
    b"DATA\r\n", MESSAGE, b"NOOP\r\n",
)  # fmt: skip
# Index of each stage's answer among the replies (0 is the banner).
ANSWER = {Stage.CONNECT: 0, Stage.HELO: 1, Stage.MAIL: 2, Stage.RCPT: 3, Stage.DATA: 4, Stage.EOD: 5}
DETAIL = {
    Stage.CONNECT: "at CONNECT", Stage.HELO: "at HELO", Stage.MAIL: "at MAIL", Stage.RCPT: "at RCPT",
    Stage.DATA: "at DATA", Stage.EOD: "at EOD by actor",
}  # fmt: skip
# A DISCONNECT after CONNECT is tracked with the close (at CONNECT every refusal closes).
CLOSED = {s: d if s is Stage.CONNECT else f"{d}, connection closed" for s, d in DETAIL.items()}


class Watcher:
    """Reports a finding at CONNECT: it must travel with a later refusal."""

    name = "watcher"
    stages = frozenset({Stage.CONNECT})
    antispam = True
    fail_open = False

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        return Outcome(Action.CONTINUE, None, (Finding("DNSWL_LISTED", self.name, "seen"),))


class Actor:
    """Takes ``action`` with its own reply at one stage."""

    name = "actor"
    antispam = False
    fail_open = False

    def __init__(self, stage: Stage, action: Action, reply: Reply) -> None:
        self.stages = frozenset({stage})
        self.action, self.reply = action, reply

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        return Outcome(self.action, self.reply, (Finding("RATE_LIMITED", self.name, stage.value),))


Serve = Callable[[list[Agent]], Awaitable[int]]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Serve, Path]]:
    tracking = TrackingLog(tmp_path / "log", LoggingConfig())
    spool = Spool(tmp_path / "queue", fsync=False)
    servers: list[asyncio.Server] = []
    connector = ReceiveConnectorConfig(name="internet", tls=False, tarpit_interval=0, max_message_size=1000)

    async def serve(agents: list[Agent]) -> int:
        env = SessionEnv(
            hostname="mx.test", policy=build_policy(Config(accepted_domains=("example.test",)), agents),
            spool=spool, tracking=tracking, tls_contexts={}, handshake_timeout=5, on_queued=lambda _id: None,
        )  # fmt: skip

        async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ip, port = writer.get_extra_info("peername")[:2]
            await Session(env, connector, reader, writer, Peer(ip, port), "S1").run()

        server = await asyncio.start_server(session, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield serve, tmp_path / "log"
    for server in servers:
        server.close()
        await server.wait_closed()
    tracking.close()


async def _talk(port: int, *lines: bytes) -> list[bytes]:
    """One reply line per line sent; after the server closes, every further reply is b""."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = [await reader.readline()]
    try:
        for line in lines:
            if not replies[-1]:
                replies.append(b"")
                continue
            writer.write(line)
            reply = await reader.readline()
            while reply[3:4] == b"-":  # EHLO's keywords: keep the last line
                reply = await reader.readline()
            replies.append(reply)
    finally:
        writer.close()
        await writer.wait_closed()
    return replies


@pytest.mark.parametrize("stage", list(ANSWER), ids=[s.value for s in ANSWER])
async def test_disconnect_sends_the_agents_reply_and_closes_at_every_stage(
    served: tuple[Serve, Path], stage: Stage
) -> None:
    serve, log = served
    go_away = Reply(421, "4.7.1", f"Too busy at {stage.value}, closing")
    port = await serve([Watcher(), Actor(stage, Action.DISCONNECT, go_away)])
    replies = await _talk(port, *LINES)
    at = ANSWER[stage]
    assert replies[at] == go_away.to_bytes()
    assert replies[at + 1 :] == [b""] * (len(replies) - at - 1)
    [refusal] = search(log, event="REJECT")
    assert (refusal["detail"], refusal["decided_by"], refusal["reply"]) == (
        CLOSED[stage], "agent actor", str(go_away),
    )  # fmt: skip
    assert [(f["name"], f["stage"]) for f in refusal["findings"]] == [
        ("DNSWL_LISTED", "connect"), ("RATE_LIMITED", stage.value),
    ]  # fmt: skip


@pytest.mark.parametrize("action", [Action.TEMPFAIL, Action.REJECT])
@pytest.mark.parametrize("stage", [Stage.HELO, Stage.MAIL, Stage.RCPT, Stage.DATA])
async def test_tempfail_and_reject_refuse_the_command_and_keep_the_connection(
    served: tuple[Serve, Path], stage: Stage, action: Action
) -> None:
    serve, log = served
    reply = Reply(450, "4.7.1", "Later") if action is Action.TEMPFAIL else Reply(550, "5.7.1", "No")
    port = await serve([Watcher(), Actor(stage, action, reply)])
    at = ANSWER[stage]
    # Up to the refused command, then NOOP: the connection is still served.
    replies = await _talk(port, *LINES[:at], b"NOOP\r\n")
    assert replies[at] == reply.to_bytes() and replies[at + 1] == b"250 2.0.0 OK\r\n"
    [refusal] = search(log, event="REJECT")
    assert (refusal["detail"], refusal["decided_by"]) == (DETAIL[stage], "agent actor")
    assert [f["name"] for f in refusal["findings"]] == ["DNSWL_LISTED", "RATE_LIMITED"]


async def test_the_cores_refusals_of_mail_and_rcpt_are_tracked(served: tuple[Serve, Path]) -> None:
    serve, log = served
    port = await serve([Watcher()])
    replies = await _talk(
        port, b"EHLO client.test\r\n", b"MAIL FROM:<s@remote.test> SIZE=5000\r\n",
        b"MAIL FROM:<s@remote.test>\r\n", b"RCPT TO:<not an address>\r\n", b"NOOP\r\n",
    )  # fmt: skip
    assert replies[2] == b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    assert replies[4].startswith(b"501 ")
    size, address = search(log, event="REJECT")
    assert (size["detail"], size["decided_by"], size["sender"]) == ("at MAIL", "protocol", "")
    assert str(size["reply"]).startswith("552 5.3.4")
    assert (address["detail"], address["decided_by"]) == ("at RCPT", "protocol")
    assert address["sender"] == "s@remote.test"
    assert [f["name"] for f in size["findings"]] == ["DNSWL_LISTED"]
