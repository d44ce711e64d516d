"""Connection filtering through a running gateway: real nsd serving a DNSBL zone, smtp-sink downstream,
the IP lists changed with ``edgeward antispam ip`` while the gateway runs."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeward.state.policy import default_policy_path
from tests.dnsserver import NSD, Nsd, start_nsd
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e

ZONE = """$ORIGIN bl.test.
$TTL 60
@ IN SOA ns.bl.test. admin.bl.test. 1 3600 600 86400 60
@ IN NS ns.bl.test.
ns IN A 127.0.0.1
2.0.0.127 IN A 127.0.0.2
3.0.0.127 IN A 127.255.255.254
"""
TEXT = "Client {ip} on {connector} is listed by {provider}"
MESSAGE = (
    b"From: a@sender.test\r\nTo: user@example.test\r\nSubject: hello\r\n\r\nA short note about lunch.\r\n"
)


@pytest.fixture
def nameserver(workdir: Path) -> Iterator[Nsd]:
    if NSD is None:
        pytest.skip("nsd is not installed (scripts/install-test-deps.sh installs it)")
    server = start_nsd(workdir / "nsd", {"bl.test": ZONE})
    yield server
    server.stop()


def _send(port: int, source: str, rcpt: str) -> tuple[int, bytes]:
    """MAIL, one RCPT and, when it is accepted, the message: the RCPT reply."""
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30) as c:
        c.ehlo("client.sender.test")
        assert c.mail("a@sender.test")[0] == 250
        code, text = c.rcpt(rcpt)
        if code == 250:
            assert c.data(MESSAGE)[0] == 250
        return code, text


def _cli(config: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "edgeward", "antispam", *args, "-c", str(config)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout


def test_listed_clients_are_refused_at_rcpt_and_the_lists_change_live(
    workdir: Path, sink: SmtpSink, nameserver: Nsd
) -> None:
    port = free_port()
    provider = {"name": "testbl", "zone": "bl.test", "rejection_response": TEXT}
    config = gateway_config(
        workdir, port=port, sink_port=sink.port,
        dns={"servers": ["127.0.0.1"], "port": nameserver.port},
        connection_filter={"block_providers": [provider]},
    )  # fmt: skip
    cli_config = workdir / "cli.toml"
    cli_config.write_text(f"[server]\ndata_dir = '{workdir}'\n")
    with InProcessGateway(config) as running:
        gw = running.gateway
        assert gw is not None and gw.policy_store is not None
        assert gw.policy_store.path == default_policy_path(workdir) and gw.policy_store.path.exists()
        assert {"policy-store-purge", "ip-allow-list-refresh"} <= set(gw.tasks._watchers)
        # Listed: refused at RCPT with the provider's text; postmaster@ still gets the mail.
        code, text = _send(port, "127.0.0.2", "user@example.test")
        assert (code, text) == (550, b"5.7.1 Client 127.0.0.2 on internet is listed by testbl")
        assert _send(port, "127.0.0.2", "postmaster@example.test")[0] == 250
        # An error answer (127.255.255.254) is no listing.
        assert _send(port, "127.0.0.3", "user@example.test")[0] == 250
        # Allow-listed while the gateway runs: the listed client passes.
        _cli(cli_config, "ip", "allow", "add", "127.0.0.2", "--comment", "partner")
        assert _send(port, "127.0.0.2", "user@example.test")[0] == 250
        # Blocked while the gateway runs: refused with the block list's text, no restart.
        assert _send(port, "127.0.0.4", "user@example.test")[0] == 250
        _cli(cli_config, "ip", "block", "add", "127.0.0.4/32", "--expires", "1h")
        code, text = _send(port, "127.0.0.4", "user@example.test")
        assert code == 550 and text.startswith(b"5.7.1 External client with IP address 127.0.0.4")
        assert _send(port, "127.0.0.4", "abuse@example.test")[0] == 250
        # The gateway's store and the CLI's are the same file.
        blocked = running.call(gw.policy_store.list_members("ip-block"))
        assert [(e.member, e.expires_at is not None) for e in blocked] == [("127.0.0.4/32", True)]
        # Five accepted: postmaster, the error answer, allow-listed, before the block, abuse@.
        assert len(sink.wait_for(5)) == 5
    assert gw.policy_store._closed  # closed at stop
