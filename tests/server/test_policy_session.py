"""Golden transcripts of the policy layer in a real session over loopback.

- findings at CONNECT, MAIL, RCPT and EOD, none over the reject threshold alone, add up to a
  rejection at end of data; a new transaction keeps the session's findings and drops the rest;
- an exempt recipient passes an anti-spam refusal at RCPT, the next recipient does not;
- DISCONNECT at MAIL sends the agent's reply and closes the connection;
- every refusal is tracked with its findings, and ``edgeward track why`` explains the verdict.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.track import track_app
from edgeward.config.schema import Config, LoggingConfig, ReceiveConnectorConfig
from edgeward.filters.base import Agent, Stage, StageContext
from edgeward.logs.tracking import TrackingLog, search
from edgeward.queue.spool import Spool
from edgeward.runtime_policy import build_policy
from edgeward.server.session import Session, SessionEnv
from edgeward.types import Action, Finding, Outcome, Peer, Reply

LISTED = Reply(550, "5.7.1", "Client host blocked by a block list")
GO_AWAY = Reply(421, "4.7.0", "Too many errors, closing connection")
# Each weighs 2 or 1.5: below the reject threshold (7) alone, 7.5 together.
SCORES = {"DNSBL_LISTED": 2.0, "SPF_SOFTFAIL": 2.0, "SPF_PERMERROR": 2.0, "SCL_1": 1.5}


class Observer:
    """An anti-spam agent that reports one finding at each stage, as the Edge agents will."""

    name = "observer"
    stages = frozenset({Stage.CONNECT, Stage.MAIL, Stage.RCPT, Stage.EOD})
    antispam = True
    fail_open = False

    def __init__(self) -> None:
        self.parsed_at_eod: list[bool] = []

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        if stage is Stage.CONNECT:
            return Outcome.proceed(Finding("DNSBL_LISTED", self.name, "zone.test 127.0.0.2"))
        if stage is Stage.MAIL and ctx.mail_from is not None and ctx.mail_from.local == "soft":
            return Outcome(
                Action.CONTINUE, None, (Finding("SPF_SOFTFAIL", self.name),), (("Received-SPF", "softfail"),)
            )
        if stage is Stage.RCPT:
            return Outcome.proceed(Finding("SPF_PERMERROR", self.name, str(ctx.recipient)))
        if stage is Stage.EOD:
            assert ctx.message is not None
            self.parsed_at_eod.append(ctx.message.mime.header("Subject") == "hello")
            return Outcome.proceed(Finding("SCL_1", self.name))
        return Outcome.proceed()


class Blocker:
    """Refuses recipients when the client is listed (the block decision delayed to RCPT)."""

    name = "blocker"
    stages = frozenset({Stage.RCPT})
    antispam = True
    fail_open = False

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        return Outcome.reject(LISTED, Finding("DNSBL_LISTED", self.name, "zone.test"))


class Disconnector:
    """Asks to close the connection for the sender bad@."""

    name = "disconnector"
    stages = frozenset({Stage.MAIL})
    antispam = False
    fail_open = False

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        if ctx.mail_from is not None and ctx.mail_from.local == "bad":
            return Outcome(Action.DISCONNECT, GO_AWAY, (Finding("RATE_LIMITED", self.name, "test"),))
        return Outcome.proceed()


Serve = Callable[[list[Agent], Config], Awaitable[int]]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Serve, Path, Spool]]:
    tracking = TrackingLog(tmp_path / "log", LoggingConfig())
    spool = Spool(tmp_path / "queue", fsync=False)
    servers: list[asyncio.Server] = []
    connector = ReceiveConnectorConfig(name="test", tls=False, tarpit_interval=0)

    async def serve(agents: list[Agent], config: Config) -> int:
        env = SessionEnv(
            hostname="mx.test", policy=build_policy(config, agents), spool=spool, tracking=tracking,
            tls_contexts={}, handshake_timeout=5, on_queued=lambda _id: None,
        )  # fmt: skip

        async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ip, port = writer.get_extra_info("peername")[:2]
            await Session(env, connector, reader, writer, Peer(ip, port), "S1").run()

        server = await asyncio.start_server(session, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield serve, tmp_path / "log", spool
    for server in servers:
        server.close()
        await server.wait_closed()
    tracking.close()


async def _talk(port: int, *lines: bytes) -> list[bytes]:
    """Send each line, read one reply line after each; an empty reply means the server closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = [await reader.readline()]
    try:
        for line in lines:
            writer.write(line)
            replies.append(await reader.readline())
            if not replies[-1]:
                break
    finally:
        writer.close()
        await writer.wait_closed()
    return replies


MESSAGE = b"From: a@remote.test\r\nSubject: hello\r\nMessage-ID: <m1@remote.test>\r\n\r\nbody\r\n.\r\n"


async def test_findings_from_every_stage_add_up_to_one_rejection(gateway: tuple[Serve, Path, Spool]) -> None:
    serve, log, spool = gateway
    observer = Observer()
    port = await serve([observer], Config(accepted_domains=("example.test",), scores=SCORES))
    replies = await _talk(
        port, b"HELO client.test\r\n", b"MAIL FROM:<soft@remote.test>\r\n",
        b"RCPT TO:<user@example.test>\r\n", b"DATA\r\n", MESSAGE,
        # A new transaction: the CONNECT finding stays, the MAIL one (SPF_SOFTFAIL) is gone.
        b"MAIL FROM:<fine@remote.test>\r\n", b"RCPT TO:<user@example.test>\r\n", b"DATA\r\n", MESSAGE,
        b"QUIT\r\n",
    )  # fmt: skip
    assert replies[5] == b"550 5.7.1 Message rejected as spam by Content Filtering\r\n"
    assert replies[9].startswith(b"250 2.0.0 OK queued as ")
    assert observer.parsed_at_eod == [True, True]
    [reject] = search(log, event="REJECT")
    assert reject["decided_by"] == "threshold reject 7 (total 7.5)"
    assert reject["message_id"] == "<m1@remote.test>"
    assert [(f["name"], f["stage"], f["score"]) for f in reject["findings"]] == [
        ("DNSBL_LISTED", "connect", 2.0), ("SPF_SOFTFAIL", "mail", 2.0), ("SPF_PERMERROR", "rcpt", 2.0),
        ("SCL_1", "eod", 1.5),
    ]  # fmt: skip
    [receive] = search(log, event="RECEIVE")
    assert receive["decided_by"] == "no threshold (total 5.5)"
    assert [f["name"] for f in receive["findings"]] == ["DNSBL_LISTED", "SPF_PERMERROR", "SCL_1"]
    stamped = spool.read_data(receive["msg_id"])
    head = stamped[: stamped.index(b"\r\n\r\n")].decode()
    assert "X-Edgeward-Antispam-Report: TOTAL:5.5;RULE:no threshold (total 5.5);" in head
    assert "S:DNSBL_LISTED@connect=2,SPF_PERMERROR@rcpt=2,SCL_1@eod=1.5" in head
    assert "Received-SPF" not in head  # it belonged to the rejected transaction

    why = CliRunner().invoke(track_app, ["why", reject["msg_id"], "--log-dir", str(log)])
    assert why.exit_code == 0, why.output
    lines = why.output.splitlines()
    assert lines[0].endswith(f"REJECT {reject['msg_id']} from <soft@remote.test> to user@example.test: "
                             "550 5.7.1 Message rejected as spam by Content Filtering")  # fmt: skip
    assert lines[1].split() == ["STAGE", "AGENT", "FINDING", "SCORE", "DETAIL"]
    assert lines[2].split() == ["connect", "observer", "DNSBL_LISTED", "2", "zone.test", "127.0.0.2"]
    assert lines[3].split() == ["mail", "observer", "SPF_SOFTFAIL", "2"]
    assert lines[4].split() == ["rcpt", "observer", "SPF_PERMERROR", "2", "user@example.test"]
    assert lines[5].split() == ["eod", "observer", "SCL_1", "1.5"]
    assert lines[6] == "  total 7.5; decided by: threshold reject 7 (total 7.5)"
    by_mid = CliRunner().invoke(track_app, ["why", "--message-id", "<m1@remote.test>", "--log-dir", str(log)])
    assert by_mid.exit_code == 0 and "REJECT" in by_mid.output and "RECEIVE" in by_mid.output


async def test_an_exempt_recipient_passes_an_anti_spam_refusal_at_rcpt(
    gateway: tuple[Serve, Path, Spool],
) -> None:
    serve, log, _ = gateway
    config = Config(
        accepted_domains=("example.test",), policy={"bypassed_recipients": ["abuse@example.test"]}
    )
    port = await serve([Blocker()], config)
    replies = await _talk(
        port, b"HELO client.test\r\n", b"MAIL FROM:<s@remote.test>\r\n", b"RCPT TO:<abuse@example.test>\r\n",
        b"RCPT TO:<user@example.test>\r\n", b"DATA\r\n", MESSAGE, b"QUIT\r\n",
    )  # fmt: skip
    assert (
        replies[3].startswith(b"250 2.1.5")
        and replies[4] == b"550 5.7.1 Client host blocked by a block list\r\n"
    )
    assert replies[6].startswith(b"250 2.0.0 OK queued as ")
    [refusal] = search(log, event="REJECT")
    assert refusal["detail"] == "at RCPT" and refusal["recipients"] == ["user@example.test"]
    assert refusal["decided_by"] == "agent blocker" and refusal["findings"][0]["name"] == "DNSBL_LISTED"
    [receive] = search(log, event="RECEIVE")
    # Only abuse@ was accepted, so the message is exempt as a whole.
    assert (
        receive["recipients"] == ["abuse@example.test"]
        and receive["decided_by"] == "exempt: every recipient exempt"
    )


async def test_disconnect_at_mail_sends_the_reply_and_closes(gateway: tuple[Serve, Path, Spool]) -> None:
    serve, log, _ = gateway
    port = await serve([Disconnector()], Config(accepted_domains=("example.test",)))
    replies = await _talk(port, b"HELO client.test\r\n", b"MAIL FROM:<bad@remote.test>\r\n", b"NOOP\r\n")
    assert replies[2] == b"421 4.7.0 Too many errors, closing connection\r\n"
    assert replies[3:] == [b""]  # closed: NOOP gets no answer
    [refusal] = search(log, event="REJECT")
    assert (refusal["detail"], refusal["decided_by"], refusal["sender"]) == (
        "at MAIL, connection closed", "agent disconnector", "bad@remote.test",
    )  # fmt: skip
    assert [f["name"] for f in refusal["findings"]] == ["RATE_LIMITED"]


class StageDisconnector:
    """DISCONNECT at one stage, with no reply of its own."""

    name = "stage-disconnector"
    antispam = False
    fail_open = False

    def __init__(self, stage: Stage) -> None:
        self.stages = frozenset({stage})

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        return Outcome(Action.DISCONNECT, None, (Finding("AGENT_FAILURE", self.name, stage.value),))


@pytest.mark.parametrize(
    ("stage", "answered"),
    [(Stage.HELO, 1), (Stage.MAIL, 2), (Stage.RCPT, 3), (Stage.DATA, 4), (Stage.EOD, 5)],
)
async def test_disconnect_closes_at_every_stage(
    gateway: tuple[Serve, Path, Spool], stage: Stage, answered: int
) -> None:
    serve, log, _ = gateway
    port = await serve([StageDisconnector(stage)], Config(accepted_domains=("example.test",)))
    replies = await _talk(
        port, b"HELO client.test\r\n", b"MAIL FROM:<s@remote.test>\r\n", b"RCPT TO:<user@example.test>\r\n",
        b"DATA\r\n", MESSAGE, b"NOOP\r\n",
    )  # fmt: skip
    assert replies[answered] == b"421 4.7.0 Closing connection\r\n"
    assert replies[answered + 1 :] == [b""]
    [refusal] = search(log, event="REJECT")
    assert refusal["decided_by"] == "agent stage-disconnector"
    assert refusal["findings"][0]["stage"] == stage.value


async def test_a_refused_recipients_findings_do_not_weigh_on_the_message(
    gateway: tuple[Serve, Path, Spool],
) -> None:
    serve, log, _ = gateway

    class Picky(Blocker):
        async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
            if ctx.recipient is not None and ctx.recipient.local == "trap":
                return Outcome.reject(LISTED, Finding("DNSBL_LISTED", self.name, "trap"))
            return Outcome.proceed()

    config = Config(accepted_domains=("example.test",), scores={"DNSBL_LISTED": 9.0})
    port = await serve([Picky()], config)
    replies = await _talk(
        port, b"HELO client.test\r\n", b"MAIL FROM:<s@remote.test>\r\n", b"RCPT TO:<trap@example.test>\r\n",
        b"RCPT TO:<user@example.test>\r\n", b"DATA\r\n", MESSAGE, b"QUIT\r\n",
    )  # fmt: skip
    assert replies[3].startswith(b"550 5.7.1") and replies[6].startswith(b"250 2.0.0 OK queued as ")
    [refusal] = search(log, event="REJECT")
    assert [f["name"] for f in refusal["findings"]] == ["DNSBL_LISTED"]
    [receive] = search(log, event="RECEIVE")
    assert receive["findings"] == [] and receive["decided_by"] == "no threshold (total 0)"


async def test_a_refusal_by_the_session_itself_carries_the_findings_so_far(
    gateway: tuple[Serve, Path, Spool],
) -> None:
    serve, log, _ = gateway
    port = await serve([Observer()], Config(scores=SCORES))  # no accepted domain: no postmaster either
    replies = await _talk(
        port,
        b"HELO client.test\r\n",
        b"MAIL FROM:<s@remote.test>\r\n",
        b"RCPT TO:<Postmaster>\r\n",
        b"QUIT\r\n",
    )
    assert replies[3] == b"550 5.1.1 No postmaster mailbox here\r\n"
    [refusal] = search(log, event="REJECT")
    assert (refusal["detail"], refusal["decided_by"]) == ("at RCPT", "session")
    assert [(f["name"], f["stage"]) for f in refusal["findings"]] == [("DNSBL_LISTED", "connect")]
