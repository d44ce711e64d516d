"""SPF on the HELO identity (RFC 7208 §2.3, §2.4): nsd on loopback, a real session, the CLI.

- at EHLO a domain-name HELO is checked on its own: an ``SPF_HELO_*`` finding of the session and
  a ``Received-SPF`` with ``identity=helo`` on the accepted message; an address literal is not;
- the null sender's MAIL FROM identity is ``postmaster@<HELO>``: its ``SPF_*`` result is the HELO
  domain's, and the HELO's ``Received-SPF`` is not written twice;
- DMARC keeps reading the MAIL FROM result, never the HELO one;
- ``edgeward antispam spf --helo NAME`` without ``--sender`` checks the HELO identity alone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.config.schema import Config, LoggingConfig, ReceiveConnectorConfig
from edgeward.filters.agents.relay import RelayControl
from edgeward.filters.agents.spf import SpfAgent, spf_from_findings
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.logs.tracking import TrackingLog, search
from edgeward.net.dns import DnsResolver
from edgeward.queue.spool import Spool
from edgeward.runtime_policy import build_policy
from edgeward.server.session import Session, SessionEnv
from edgeward.types import Address, Peer
from tests.dnsserver import NSD, Nsd, start_nsd

ZONE = """$ORIGIN helo.test.
$TTL 60
@ IN SOA ns.helo.test. admin.helo.test. 1 3600 600 86400 60
@ IN NS ns.helo.test.
ns IN A 127.0.0.1
good IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
forged IN TXT "v=spf1 ip4:192.0.2.1 -all"
soft IN TXT "v=spf1 ~all"
sender IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
"""
MESSAGE = b"From: a@sender.helo.test\r\nSubject: hi\r\nMessage-ID: <h1@helo.test>\r\n\r\nbody\r\n.\r\n"


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nsd]:
    if NSD is None:
        pytest.skip("nsd is not installed (apt-get install -y nsd)")
    server = start_nsd(tmp_path_factory.mktemp("nsd-helo"), {"helo.test": ZONE})
    try:
        yield server
    finally:
        server.stop()


def _resolver(server: Nsd) -> DnsResolver:
    return DnsResolver(["127.0.0.1"], port=server.port, timeout=2.0)


@pytest.fixture
async def gateway(nsd: Nsd, tmp_path: Path) -> AsyncIterator[tuple[int, Path, Spool]]:
    tracking = TrackingLog(tmp_path / "log", LoggingConfig())
    spool = Spool(tmp_path / "queue", fsync=False)
    config = Config(accepted_domains=("example.test",))
    agents = [RelayControl(config.accepted_domains), SpfAgent(_resolver(nsd), "mx.test", time_limit=5)]
    env = SessionEnv(
        hostname="mx.test", policy=build_policy(config, agents), spool=spool, tracking=tracking,
        tls_contexts={}, handshake_timeout=5, on_queued=lambda _id: None,
    )  # fmt: skip
    connector = ReceiveConnectorConfig(name="internet", tls=False, tarpit_interval=0)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip, port = writer.get_extra_info("peername")[:2]
        await Session(env, connector, reader, writer, Peer(ip, port), "S1").run()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], tmp_path / "log", spool
    tracking.close()


async def _send(port: int, helo: str, sender: str) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = [await reader.readline()]
    for line in (f"EHLO {helo}\r\n".encode(), f"MAIL FROM:<{sender}>\r\n".encode(),
                 b"RCPT TO:<user@example.test>\r\n", b"DATA\r\n", MESSAGE, b"QUIT\r\n"):  # fmt: skip
        writer.write(line)
        reply = await reader.readline()
        while reply[3:4] == b"-":
            reply = await reader.readline()
        replies.append(reply)
    writer.close()
    await writer.wait_closed()
    return replies


def _received(log: Path, spool: Spool) -> tuple[list[str], bytes]:
    [receive] = search(log, event="RECEIVE")
    head = spool.read_data(str(receive["msg_id"])).split(b"\r\n\r\n", 1)[0]
    return [f"{f['name']}@{f['stage']}" for f in receive["findings"]], head


async def test_a_forged_helo_is_found_at_ehlo_and_stamped_with_identity_helo(
    gateway: tuple[int, Path, Spool],
) -> None:
    port, log, spool = gateway
    replies = await _send(port, "forged.helo.test", "a@sender.helo.test")
    assert replies[-2].startswith(b"250 2.0.0 OK queued as ")
    findings, head = _received(log, spool)
    assert findings == ["SPF_HELO_FAIL@helo", "SPF_PASS@mail"]
    assert head.count(b"Received-SPF:") == 2
    assert b"Received-SPF: fail\r\n\t(mx.test: forged.helo.test does not designate 127.0.0.1" in head
    assert b"identity=helo" in head and b"identity=mailfrom" in head


async def test_the_null_sender_is_postmaster_at_the_helo_and_stamped_once(
    gateway: tuple[int, Path, Spool],
) -> None:
    port, log, spool = gateway
    replies = await _send(port, "soft.helo.test", "")
    assert replies[-2].startswith(b"250 2.0.0 OK queued as ")
    findings, head = _received(log, spool)
    assert findings == ["SPF_HELO_SOFTFAIL@helo", "SPF_SOFTFAIL@mail"]
    assert head.count(b"Received-SPF:") == 1 and b"identity=helo" in head
    [receive] = search(log, event="RECEIVE")
    mail = next(f for f in receive["findings"] if f["name"] == "SPF_SOFTFAIL")
    assert str(mail["detail"]).startswith("helo=soft.helo.test softfail")


async def test_a_good_helo_passes_and_an_address_literal_is_not_checked(
    gateway: tuple[int, Path, Spool],
) -> None:
    port, log, _ = gateway
    await _send(port, "good.helo.test", "a@sender.helo.test")
    await _send(port, "[127.0.0.1]", "a@sender.helo.test")
    good, literal = search(log, event="RECEIVE")
    assert [f["name"] for f in good["findings"]] == ["SPF_HELO_PASS", "SPF_PASS"]
    assert [f["name"] for f in literal["findings"]] == ["SPF_PASS"]


async def test_dmarc_reads_the_mail_from_result_not_the_helo_one(nsd: Nsd) -> None:
    agent = SpfAgent(_resolver(nsd), "mx.test", time_limit=5)
    info = SessionInfo("s1", Peer("127.0.0.1", 1), ReceiveConnectorConfig(name="internet"),
                       helo="forged.helo.test")  # fmt: skip
    helo = await agent.check(Stage.HELO, StageContext(Stage.HELO, info))
    assert [f.name for f in helo.findings] == ["SPF_HELO_FAIL"]
    assert spf_from_findings(helo.findings) is None
    sender = Address("a", "sender.helo.test")
    mail_ctx = StageContext(Stage.MAIL, info, mail_from=sender, earlier=helo.findings)
    mail = await agent.check(Stage.MAIL, mail_ctx)
    seen = spf_from_findings((*helo.findings, *mail.findings))
    assert seen is not None and (seen.result, seen.domain) == ("pass", "sender.helo.test")


def _config(tmp_path: Path, server: Nsd) -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text(
        'accepted_domains = ["example.org"]\n'
        '[server]\ndata_dir = "."\nhostname = "gw.example.org"\n'
        f'[dns]\nservers = ["127.0.0.1"]\nport = {server.port}\ntimeout = 2\n'
    )
    return path


def test_the_cli_checks_the_helo_identity_alone_without_sender(nsd: Nsd, tmp_path: Path) -> None:
    config = str(_config(tmp_path, nsd))
    runner = CliRunner()
    ask = ["antispam", "spf", "--helo", "forged.helo.test", "-c", config]
    out = runner.invoke(app, [*ask, "--ip", "192.0.2.7"])
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines()[0] == (
        "spf: fail (SPF_HELO_FAIL; identity helo, domain forged.helo.test)"
    )
    doc = json.loads(runner.invoke(app, [*ask, "--json", "--ip", "192.0.2.1"]).stdout)
    assert (doc["result"], doc["finding"], doc["identity"]) == ("pass", "SPF_HELO_PASS", "helo")
    assert "identity=helo" in doc["received_spf"] and "envelope-from" not in doc["received_spf"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ip", "192.0.2.1"], "give --sender, --helo, or both"),
        (["--ip", "192.0.2.1", "--helo", "[192.0.2.1]"], "not a domain name"),
    ],
)
def test_the_cli_refuses_a_question_without_an_identity(
    nsd: Nsd, tmp_path: Path, args: list[str], message: str
) -> None:
    out = CliRunner().invoke(app, ["antispam", "spf", *args, "-c", str(_config(tmp_path, nsd))])
    assert out.exit_code == 2 and message in out.stderr and "Traceback" not in out.output
