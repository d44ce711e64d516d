"""Every refusal reaches the tracking log, and the agent log names the queue id at EOD."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest
import trustme

from edgeward.logs.agentlog import read_agent_log
from edgeward.logs.tracking import search
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e


def _client(port: int) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30)


def _rejects(workdir: Path) -> list[dict[str, object]]:
    return list(search(workdir / "log", event="REJECT"))


def test_refusals_at_mail_and_rcpt_are_tracked(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    ca_path = workdir / "partners-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_path))
    partners = {
        "domain_secure_partners": ["partner.test"], "client_ca": str(ca_path),
        "permission_groups": ["anonymous", "partners"],
    }  # fmt: skip
    config = gateway_config(workdir, port=port, sink_port=sink.port, connector=partners)
    with InProcessGateway(config), _client(port) as c:
        c.ehlo("client.test")
        # An agent at MAIL: an outsider using the accepted domain as sender.
        assert c.mail("ceo@example.test")[0] == 550
        # The session's own rule at MAIL: domain security without TLS.
        assert c.mail("orders@partner.test")[0] == 530
        # An agent at RCPT: relaying is refused.
        assert c.mail("someone@remote.test")[0] == 250
        assert c.rcpt("victim@elsewhere.test")[0] == 550
        assert c.rcpt("bob@example.test")[0] == 250
        c.rset()
    spoof, partner, relay = _rejects(workdir)
    assert (spoof["sender"], spoof["recipients"], spoof["detail"]) == ("ceo@example.test", [], "at MAIL")
    assert str(spoof["reply"]).startswith("550 5.7.1")
    assert (partner["sender"], str(partner["reply"])[:9]) == ("orders@partner.test", "530 5.7.0")
    assert (relay["sender"], relay["recipients"], relay["detail"]) == (
        "someone@remote.test", ["victim@elsewhere.test"], "at RCPT",
    )  # fmt: skip
    assert str(relay["reply"]).startswith("550 5.7.1 Unable to relay")
    assert {r["client_ip"] for r in (spoof, partner, relay)} == {"127.0.0.2"}
    assert {r["connector"] for r in (spoof, partner, relay)} == {"internet"}


def test_tls_and_auth_required_refusals_are_tracked(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = gateway_config(
        workdir, port=port, sink_port=sink.port, connector={"require_tls": True},
        relay={"require_auth": True, "auth_mechanisms": ["PLAIN"], "permission_groups": ["users"]},
    )  # fmt: skip
    with InProcessGateway(config):
        with _client(port) as c:
            c.ehlo("client.test")
            assert c.mail("a@remote.test")[0] == 530
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.1", 0), timeout=30) as c:
            c.ehlo("client.test")
            assert c.mail("b@remote.test")[0] == 530
    tls, auth = _rejects(workdir)
    assert (tls["sender"], tls["reply"]) == ("a@remote.test", "530 5.7.0 Must issue a STARTTLS command first")
    assert (auth["sender"], auth["reply"], auth["connector"]) == (
        "b@remote.test", "530 5.7.0 Authentication required", "relay",
    )  # fmt: skip


def test_an_eod_refusal_names_its_queue_id_in_both_logs(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    looping = "".join(f"Received: from hop{i}.test by hop{i + 1}.test; Tue, 1 Dec 2026 00:00:00 +0000\r\n"
                      for i in range(31))  # fmt: skip
    with InProcessGateway(gateway_config(workdir, port=port, sink_port=sink.port)), _client(port) as c:
        c.ehlo("client.test")
        c.mail("someone@remote.test")
        c.rcpt("bob@example.test")
        code, _ = c.data((looping + "Subject: loop\r\n\r\nround and round\r\n").encode())
        assert code == 554
    [reject] = _rejects(workdir)
    assert reject["msg_id"] and reject["detail"] == "at EOD by hop-count"
    assert (reject["sender"], reject["recipients"]) == ("someone@remote.test", ["bob@example.test"])
    [entry] = [e for e in read_agent_log(workdir / "log") if e["agent"] == "hop-count"]
    assert entry["msg_id"] == reject["msg_id"] and entry["stage"] == "eod" and entry["action"] == "reject"
