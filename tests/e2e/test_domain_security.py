"""Two gateways exchanging mail with domain security (mutual TLS), and every way it must fail.

Gateway A relays for a.test and sends b.test's mail to gateway B over a send connector that
verifies B's certificate and presents A's own; B lists a.test as a domain-secure partner and
requires a certificate from the partners' CA naming it. Nothing is ever sent in clear.
"""

from __future__ import annotations

import smtplib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from edgeward.config.load import parse_config
from edgeward.config.schema import Config
from edgeward.queue.spool import Spool
from edgeward.tls.store import CertificateStore
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port

pytestmark = pytest.mark.e2e


def _install(config: Config, leaf: trustme.LeafCert, folder: Path) -> None:
    bundle = folder / "bundle.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(bundle))
    store = CertificateStore(config.resolve(config.tls.store))
    # Expired certificates are installed on purpose by the failure tests.
    store.enable(store.import_pem(bundle, allow_expired=True).info.thumbprint, "smtp", force=True)


def _gateway_b(root: Path, port: int, sink: SmtpSink, ca_path: Path) -> Config:
    return parse_config({
        "server": {"hostname": "mx.b.test", "data_dir": str(root), "shutdown_grace": 5},
        "accepted_domains": ["b.test"],
        "receive_connectors": [{
            "name": "internet", "bindings": [f"127.0.0.1:{port}"], "tarpit_interval": 0,
            "client_ca": str(ca_path), "domain_secure_partners": ["a.test"],
            "permission_groups": ["anonymous", "partners"],
        }],
        "send_connectors": [{"name": "inbound", "address_spaces": ["b.test"],
                             "smart_hosts": [f"127.0.0.1:{sink.port}"]}],
        "queue": {"scan_interval": 0.2},
    })  # fmt: skip


def _gateway_a(root: Path, port: int, b_port: int, ca_path: Path, **send: Any) -> Config:
    connector = {
        "name": "partner-b", "address_spaces": ["b.test"], "smart_hosts": [f"localhost:{b_port}"],
        "tls": "verify_hostname", "tls_ca_file": str(ca_path), "tls_client_certificate": True, **send,
    }  # fmt: skip
    return parse_config({
        "server": {"hostname": "mx.a.test", "data_dir": str(root), "shutdown_grace": 5},
        "accepted_domains": ["a.test"],
        "receive_connectors": [{"name": "relay", "bindings": [f"127.0.0.1:{port}"],
                                "remote_ranges": ["127.0.0.1/32"], "permissions": ["submit", "relay"]}],
        "send_connectors": [connector],
        "queue": {"scan_interval": 0.2, "glitch_retry_interval": 60},
    })  # fmt: skip


def _send_via_a(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        c.ehlo("app.a.test")
        order = b"From: orders@a.test\r\nSubject: purchase order\r\n\r\n42 widgets\r\n"
        c.sendmail("orders@a.test", ["buyer@b.test"], order)


def _wait_deferred(config: Config, timeout: float = 30) -> str:
    spool = Spool(config.resolve(Path("queue")), fsync=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = [r for r in spool.list() if r.recipients[0].last_reply]
        if records:
            return records[0].recipients[0].last_reply
        time.sleep(0.1)
    raise TimeoutError("the message was not attempted")


_PAST = datetime.now(UTC) - timedelta(days=400)
_EXPIRED = {"not_before": _PAST, "not_after": _PAST + timedelta(days=90)}


@pytest.fixture
def pki() -> trustme.CA:
    return trustme.CA()


def _setup(
    workdir: Path,
    sink: SmtpSink,
    pki: trustme.CA,
    a_leaf: trustme.LeafCert | None,
    b_names: tuple[str, ...] = ("mx.b.test", "localhost"),
    b_expired: bool = False,
    **send: Any,
) -> tuple[Config, Config]:
    ca_path = workdir / "partners-ca.pem"
    pki.cert_pem.write_to_path(str(ca_path))
    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    b_port, a_port = free_port(), free_port()
    config_b = _gateway_b(workdir / "b", b_port, sink, ca_path)
    config_a = _gateway_a(workdir / "a", a_port, b_port, ca_path, **send)
    _install(config_b, pki.issue_cert(*b_names, **(_EXPIRED if b_expired else {})), workdir / "b")
    if a_leaf is not None:
        _install(config_a, a_leaf, workdir / "a")
    return config_a, config_b


def test_partners_exchange_mail_over_mutual_tls(workdir: Path, sink: SmtpSink, pki: trustme.CA) -> None:
    config_a, config_b = _setup(workdir, sink, pki, pki.issue_cert("mx.a.test", "a.test"))
    with InProcessGateway(config_b), InProcessGateway(config_a):
        _send_via_a(
            config_a.receive_connectors[0].bindings[0].split(":")[1]
            and int(config_a.receive_connectors[0].bindings[0].rsplit(":", 1)[1])
        )
        [message] = sink.wait_for(1)
    assert b"42 widgets" in message
    assert b"(client certificate for mx.a.test, a.test verified)" in message


@pytest.mark.parametrize(
    "case",
    [
        "no-client-certificate",
        "client-certificate-from-another-ca",
        "expired-client-certificate",
        "wrong-server-name",
        "expired-server-certificate",
    ],
)
def test_domain_security_failures_defer_and_never_fall_back_to_clear(
    workdir: Path, sink: SmtpSink, pki: trustme.CA, case: str
) -> None:
    leaf = {
        "no-client-certificate": None,
        "client-certificate-from-another-ca": trustme.CA().issue_cert("mx.a.test", "a.test"),
        "expired-client-certificate": pki.issue_cert("mx.a.test", "a.test", **_EXPIRED),
        "wrong-server-name": pki.issue_cert("mx.a.test", "a.test"),
        "expired-server-certificate": pki.issue_cert("mx.a.test", "a.test"),
    }[case]
    send = {"tls_client_certificate": False} if case == "no-client-certificate" else {}
    b_names = ("mx.other.test",) if case == "wrong-server-name" else ("mx.b.test", "localhost")
    config_a, config_b = _setup(
        workdir, sink, pki, leaf, b_names, b_expired=case == "expired-server-certificate", **send
    )
    a_port = int(config_a.receive_connectors[0].bindings[0].rsplit(":", 1)[1])
    with InProcessGateway(config_b), InProcessGateway(config_a):
        _send_via_a(a_port)
        reply = _wait_deferred(config_a)
    assert reply.startswith("4"), reply
    # A partner certificate from another CA makes B end the TLS session after the handshake, which
    # A sees as a lost connection; deferred either way, and never retried in clear.
    expected = {"no-client-certificate": ("4.7.0",), "client-certificate-from-another-ca": ("4.7.", "4.4.2"),
                "expired-client-certificate": ("4.7.", "4.4.2"), "wrong-server-name": ("4.7.5",),
                "expired-server-certificate": ("4.7.5",)}[case]  # fmt: skip
    assert any(code in reply for code in expected), reply
    if case == "expired-server-certificate":
        assert "expired" in reply, reply
    assert sink.messages() == []
