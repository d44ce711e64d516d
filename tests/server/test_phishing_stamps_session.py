"""Phishing level and organisation stamps in a real session, with the shipped classifier.

- a client's forged ``X-MS-Exchange-Organization-*`` and ``X-Edgeward-*`` fields never reach the
  spool, whether or not ``[stamps] exchange_organization`` writes ours;
- with it on, the accepted message carries our ``X-MS-Exchange-Organization-SCL`` (the verdict's
  total on 0-9), ``-PCL`` and ``-Antispam-Report``; ``X-Edgeward-PCL`` is always stamped;
- a phishing message reaching ``pcl_reject`` is refused at end of data, and ``edgeward track
  why`` names the phishing rule that decided.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgeward.cli.track import track_app
from edgeward.config.load import parse_config
from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.logs.tracking import TrackingLog, search
from edgeward.queue.spool import Spool
from edgeward.runtime_policy import build_agents, build_policy
from edgeward.server.session import Session, SessionEnv
from edgeward.types import Peer

FORGED = (
    b"X-MS-Exchange-Organization-SCL: -1\r\n"
    b"X-MS-Exchange-Organization-AuthAs: Internal\r\n"
    b"X-Edgeward-PCL: 1\r\n"
)
NOTE = b"From: a@remote.test\r\nSubject: lunch\r\nMessage-ID: <n1@remote.test>\r\n\r\nNoon?\r\n"
PHISH = (
    b'From: "PayPal Security" <service@paypa1-security.test>\r\nSubject: Your account has been suspended\r\n'
    b"Message-ID: <p1@remote.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<p>Unusual activity: verify your account within 24 hours or your account will be suspended.</p>\r\n"
    b'<p><a href="http://paypal.com.secure-login.test/verify">https://www.paypal.com/signin</a></p>\r\n'
    b'<form action="http://192.0.2.9/login"><input type="password" name="pw"></form>\r\n'
)
Serve = Callable[[dict[str, Any]], Awaitable[int]]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Serve, Path, Spool]]:
    spool = Spool(tmp_path / "queue", fsync=False)
    servers: list[asyncio.Server] = []
    logs: list[TrackingLog] = []
    connector = ReceiveConnectorConfig(name="internet", tls=False, tarpit_interval=0)

    async def serve(extra: dict[str, Any]) -> int:
        data = {
            "server": {"hostname": "mx.test", "data_dir": str(tmp_path)},
            "accepted_domains": ["example.test"],
            "spf": {"enabled": False}, "dmarc": {"enabled": False},
            "agents": {"content_filter": {"learning": False}}, **extra,
        }  # fmt: skip
        config = parse_config(data, base=tmp_path)
        tracking = TrackingLog(tmp_path / "log", config.logging)
        logs.append(tracking)
        env = SessionEnv(
            hostname="mx.test", policy=build_policy(config, build_agents(config, spool)), spool=spool,
            tracking=tracking, tls_contexts={}, handshake_timeout=5, on_queued=lambda _id: None,
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
    for log in logs:
        log.close()


async def _send(port: int, message: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    reply = b""
    for line in (b"HELO client.remote.test\r\n", b"MAIL FROM:<a@remote.test>\r\n",
                 b"RCPT TO:<user@example.test>\r\n", b"DATA\r\n", message + b".\r\n"):  # fmt: skip
        writer.write(line)
        reply = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return reply


def _head(log: Path, spool: Spool) -> list[tuple[str, str]]:
    [receive] = search(log, event="RECEIVE")
    head = spool.read_data(str(receive["msg_id"])).split(b"\r\n\r\n", 1)[0].decode()
    starts = [line for line in head.split("\r\n") if not line.startswith(("\t", " "))]
    return [(n.strip(), v.strip()) for n, _, v in (line.partition(":") for line in starts)]


async def test_forged_organisation_fields_are_dropped_and_none_added_by_default(
    served: tuple[Serve, Path, Spool],
) -> None:
    serve, log, spool = served
    reply = await _send(await serve({}), FORGED + NOTE)
    assert reply.startswith(b"250 2.0.0 OK queued as ")
    fields = _head(log, spool)
    assert not [n for n, _ in fields if n.lower().startswith("x-ms-exchange")]
    pcl = [v for n, v in fields if n == "X-Edgeward-PCL"]
    assert pcl == ["1"]  # ours: the forged one is gone


async def test_with_exchange_stamps_on_the_organisation_gets_our_scl_pcl_and_report(
    served: tuple[Serve, Path, Spool],
) -> None:
    serve, log, spool = served
    reply = await _send(await serve({"stamps": {"exchange_organization": True}}), FORGED + NOTE)
    assert reply.startswith(b"250 2.0.0 OK queued as ")
    fields = _head(log, spool)
    exchange = [(n, v) for n, v in fields if n.lower().startswith("x-ms-exchange")]
    assert [n for n, _ in exchange] == [
        "X-MS-Exchange-Organization-SCL", "X-MS-Exchange-Organization-PCL",
        "X-MS-Exchange-Organization-Antispam-Report",
    ]  # fmt: skip
    [receive] = search(log, event="RECEIVE")
    total = sum(f["score"] for f in receive["findings"])
    assert dict(exchange)["X-MS-Exchange-Organization-SCL"] == str(max(0, min(9, int(total))))
    assert dict(exchange)["X-MS-Exchange-Organization-PCL"] == "1"
    assert dict(exchange)["X-MS-Exchange-Organization-Antispam-Report"].startswith("OrigIP:127.0.0.1;SCL:")


async def test_a_phishing_message_at_pcl_reject_is_refused_and_track_why_names_the_rule(
    served: tuple[Serve, Path, Spool],
) -> None:
    serve, log, _ = served
    # The spam total alone would not refuse it here: phishing decides on its own level.
    port = await serve({"policy": {"reject": "off", "pcl_reject": 8}})
    reply = await _send(port, PHISH)
    assert reply == b"550 5.7.1 Message rejected as suspected phishing\r\n"
    [refusal] = search(log, event="REJECT")
    assert refusal["decided_by"] == "phishing pcl_reject 8 (PCL 8)"
    out = CliRunner().invoke(track_app, ["why", str(refusal["msg_id"]), "--log-dir", str(log)])
    assert out.exit_code == 0, out.output
    assert "phishing pcl_reject 8 (PCL 8)" in out.stdout and "PCL_8" in out.stdout
