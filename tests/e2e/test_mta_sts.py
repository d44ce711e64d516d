"""MTA-STS through a running gateway: real nsd, a real HTTPS policy host, smtp-sink as the MX.

The gateway routes by MX through its configured resolver ([dns]) and fetches policies from the
policy host ([mta_sts]); smtp-sink offers no STARTTLS, so an enforced policy must keep the
message queued while a testing policy lets it go.
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from edgeward.config.load import parse_config
from edgeward.config.schema import Config
from edgeward.queue.spool import Spool
from edgeward.state.sqlite import StateStore, default_db_path
from tests.dnsserver import NSD, Nsd, start_nsd
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port
from tests.policyhost import PolicyHost, enforce

pytestmark = pytest.mark.e2e

ZONE = """$ORIGIN sts.test.
$TTL 60
@ IN SOA ns.sts.test. admin.sts.test. 1 3600 600 86400 60
@ IN NS ns.sts.test.
ns IN A 127.0.0.1
"""
for _label in ("enforce", "testing"):
    ZONE += (
        f"{_label} IN MX 10 mx.{_label}.sts.test.\nmx.{_label} IN A 127.0.0.1\n"
        f'_mta-sts.{_label} IN TXT "v=STSv1; id=1;"\nmta-sts.{_label} IN A 127.0.0.1\n'
    )


@pytest.fixture
def nameserver(workdir: Path) -> Iterator[Nsd]:
    if NSD is None:
        pytest.skip("nsd is not installed (scripts/install-test-deps.sh installs it)")
    server = start_nsd(workdir / "nsd", {"sts.test": ZONE})
    yield server
    server.stop()


def _config(workdir: Path, sink: SmtpSink, dns_port: int, https_port: int, ca_file: Path) -> Config:
    return parse_config({
        "server": {"hostname": "mx.a.test", "data_dir": str(workdir / "gw"), "shutdown_grace": 5},
        "accepted_domains": ["a.test"],
        "receive_connectors": [{"name": "relay", "bindings": [f"127.0.0.1:{free_port()}"],
                                "tarpit_interval": 0, "remote_ranges": ["127.0.0.1/32"],
                                "permissions": ["submit", "relay"]}],
        "send_connectors": [{"name": "internet", "address_spaces": ["*"], "dns_routing": True,
                             "port": sink.port, "mta_sts": True}],
        "dns": {"servers": ["127.0.0.1"], "port": dns_port},
        "mta_sts": {"https_port": https_port, "ca_file": str(ca_file)},
        "queue": {"scan_interval": 0.2, "glitch_retry_interval": 60},
    })  # fmt: skip


def test_enforced_policy_keeps_mail_from_a_clear_text_mx_testing_policy_does_not(
    workdir: Path, sink: SmtpSink, nameserver: Nsd
) -> None:
    ca = trustme.CA()
    ca_file = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    https_port = free_port()
    policies = {
        "enforce.sts.test": enforce("mx.enforce.sts.test"),
        "testing.sts.test": enforce("mx.testing.sts.test", mode="testing"),
    }
    host = PolicyHost(https_port, ca, policies)
    config = _config(workdir, sink, nameserver.port, https_port, ca_file)
    port = int(config.receive_connectors[0].bindings[0].rsplit(":", 1)[1])
    try:
        with InProcessGateway(config):
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
                head = b"From: ops@a.test\r\nSubject: "
                c.sendmail("ops@a.test", ["u@enforce.sts.test"], head + b"enforced\r\n\r\nsecret\r\n")
                c.sendmail("ops@a.test", ["u@testing.sts.test"], head + b"testing\r\n\r\nhello\r\n")
            [delivered] = sink.wait_for(1)
            spool = Spool(config.resolve(Path("queue")), fsync=False)
            deadline = time.monotonic() + 30
            while not any(r.last_reply for r in spool.list()) and time.monotonic() < deadline:
                time.sleep(0.1)
            [kept] = spool.list()
    finally:
        host.close()
    assert b"Subject: testing" in delivered
    assert kept.recipients[0].address == "u@enforce.sts.test"
    assert kept.last_reply.startswith("451 4.7.4") and "(mta-sts)" in kept.last_reply, kept.last_reply
    assert all(b"secret" not in m for m in sink.messages())
    # The policies were cached in the gateway's state store, where they survive a restart.
    with StateStore(default_db_path(workdir / "gw")) as store:
        rows = store.run(lambda db: db.execute("SELECT domain, mode FROM mta_sts_policies").fetchall())
    assert sorted(tuple(r) for r in rows) == [
        ("enforce.sts.test", "enforce"),
        ("testing.sts.test", "testing"),
    ]
