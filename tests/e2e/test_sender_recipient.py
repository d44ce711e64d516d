"""Sender filtering, safe senders and rate limits in a running gateway, their lists changed live
with the ``edgeward antispam`` commands on the policy store file the gateway reads."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.logs.tracking import search
from edgeward.state.policy import SqlitePolicyStore, default_policy_path
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e

GTUBE = (Path(__file__).resolve().parents[1] / "content" / "data" / "gtube.eml").read_bytes()
runner = CliRunner()


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture
def config_file(workdir: Path) -> Path:
    path = workdir / "edgeward.toml"
    path.write_text(f"accepted_domains = ['example.test']\n[server]\ndata_dir = '{workdir}'\n")
    return path


@pytest.fixture
def store(workdir: Path) -> Iterator[SqlitePolicyStore]:
    # The gateway's store on the file the commands open (it connects on first use, in its loop).
    yield SqlitePolicyStore(default_policy_path(workdir))


def _cli(*args: str) -> str:
    result = runner.invoke(app, ["antispam", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_sender_blocked_live_is_refused_554_5_1_0(
    workdir: Path, sink: SmtpSink, config_file: Path, store: SqlitePolicyStore
) -> None:
    port = free_port()
    config = gateway_config(workdir, port=port, sink_port=sink.port)
    with InProcessGateway(config) as gw:
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
            c.ehlo("client.remote.test")
            assert c.mail("a@mail.spam.test")[0] == 250
            c.rset()
            _cli("sender", "block", "add", "*.spam.test", "--comment", "campaign", "-c", str(config_file))
            code, text = c.mail("a@mail.spam.test")
            assert (code, text.split()[0]) == (554, b"5.1.0")
            # Closed after the refusal, as Exchange's Sender Filter does.
            with pytest.raises(smtplib.SMTPServerDisconnected):
                c.mail("a@fine.test")
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
            c.ehlo("client.remote.test")
            assert c.mail("a@fine.test")[0] == 250
        gw.call(store.close())
    [refusal] = search(workdir / "log", event="REJECT")
    assert refusal["decided_by"] == "agent sender-filter"
    assert refusal["detail"] == "at MAIL, connection closed"
    assert [f["name"] for f in refusal["findings"]] == ["SENDER_BLOCKED"]


def test_a_safelisted_sender_passes_the_content_filter_for_that_recipient(
    workdir: Path, sink: SmtpSink, config_file: Path, store: SqlitePolicyStore
) -> None:
    port = free_port()
    config = gateway_config(workdir, port=port, sink_port=sink.port)

    def send() -> int:
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
            c.ehlo("client.remote.test")
            c.mail("friend@remote.test")
            c.rcpt("user@example.test")
            code, _ = c.data(_crlf(GTUBE))
            return code

    with InProcessGateway(config) as gw:
        assert send() == 550  # GTUBE: SCL 9
        _cli("safelist", "add", "user@example.test", "@remote.test", "-c", str(config_file))
        listed = _cli("safelist", "list", "user@example.test", "-c", str(config_file))
        assert listed.split() == ["user@example.test", "@remote.test"]
        assert send() == 250
        [message] = sink.wait_for(1)
        gw.call(store.close())
    assert b"X-Edgeward-SCL: -1" in message
    assert b"RULE:exempt: every recipient exempt" in message.replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")


def test_a_rate_limit_hit_gives_450_4_7_1_naming_the_limit(
    workdir: Path, sink: SmtpSink, store: SqlitePolicyStore
) -> None:
    port = free_port()
    config = gateway_config(
        workdir, port=port, sink_port=sink.port, agents={"rate_limits": {"messages_per_sender_domain": 2}}
    )
    with InProcessGateway(config) as gw:
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
            c.ehlo("client.remote.test")
            for _ in range(2):
                assert c.mail("a@bulk.test")[0] == 250
                c.rset()
            code, text = c.mail("b@bulk.test")
            assert code == 450
            assert text.decode().startswith(
                "4.7.1 Rate limit exceeded: 2 messages per minute per sender-domain bulk.test"
            )
            assert c.mail("a@other.test")[0] == 250
        gw.call(store.close())
    [refusal] = search(workdir / "log", event="REJECT")
    assert [f["name"] for f in refusal["findings"]] == ["RATE_LIMIT_EXCEEDED"]
