"""REQUIRETLS (RFC 8689) end to end: a client, gateway A, gateway B, Postfix's smtp-sink.

A relays for a.test and sends b.test's mail to B, whose certificate comes from a test CA that A
trusts. B offers REQUIRETLS once TLS is up. B's own next hop, smtp-sink, has no TLS at all, so
B must keep a REQUIRETLS message rather than pass it on in clear.
"""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

import pytest
import trustme

from edgeward.config.load import parse_config
from edgeward.config.schema import Config
from edgeward.logs.tracking import search
from edgeward.queue.spool import Spool
from edgeward.tls.store import CertificateStore
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, insecure_context

pytestmark = pytest.mark.e2e

MESSAGE = b"From: cfo@a.test\r\nTo: auditor@b.test\r\nSubject: figures\r\n\r\nQ3 numbers\r\n"


def _setup(workdir: Path, sink: SmtpSink) -> tuple[Config, Config]:
    pki = trustme.CA()
    ca_path = workdir / "ca.pem"
    pki.cert_pem.write_to_path(str(ca_path))
    a_port, b_port = free_port(), free_port()
    config_b = parse_config({
        "server": {"hostname": "mx.b.test", "data_dir": str(workdir / "b"), "shutdown_grace": 5},
        "accepted_domains": ["b.test"],
        "receive_connectors": [{"name": "internet", "bindings": [f"127.0.0.1:{b_port}"],
                                "tarpit_interval": 0}],
        "send_connectors": [{"name": "inbound", "address_spaces": ["b.test"],
                             "smart_hosts": [f"127.0.0.1:{sink.port}"]}],
        "queue": {"scan_interval": 0.2, "glitch_retry_interval": 60},
    })  # fmt: skip
    config_a = parse_config({
        "server": {"hostname": "mx.a.test", "data_dir": str(workdir / "a"), "shutdown_grace": 5},
        "accepted_domains": ["a.test"],
        "receive_connectors": [{"name": "relay", "bindings": [f"127.0.0.1:{a_port}"], "tarpit_interval": 0,
                                "remote_ranges": ["127.0.0.1/32"], "permissions": ["submit", "relay"]}],
        "send_connectors": [{"name": "to-b", "address_spaces": ["b.test"],
                             "smart_hosts": [f"localhost:{b_port}"], "tls_ca_file": str(ca_path)}],
        "queue": {"scan_interval": 0.2, "glitch_retry_interval": 60},
    })  # fmt: skip
    bundle = workdir / "b-bundle.pem"
    pki.issue_cert("mx.b.test", "localhost").private_key_and_cert_chain_pem.write_to_path(str(bundle))
    (workdir / "b").mkdir(exist_ok=True)
    store = CertificateStore(config_b.resolve(config_b.tls.store))
    store.enable(store.import_pem(bundle).info.thumbprint, "smtp", force=True)
    return config_a, config_b


def _port(config: Config) -> int:
    return int(config.receive_connectors[0].bindings[0].rsplit(":", 1)[1])


def _wait(predicate: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError("condition not reached")


def test_requiretls_is_offered_and_accepted_only_under_tls(workdir: Path, sink: SmtpSink) -> None:
    _, config_b = _setup(workdir, sink)
    with InProcessGateway(config_b), smtplib.SMTP("127.0.0.1", _port(config_b), timeout=30) as c:
        c.ehlo("client.test")
        assert not c.has_extn("requiretls")
        code, text = c.mail("x@a.test", ["REQUIRETLS"])
        assert (code, text[:5]) == (555, b"5.5.4")
        c.starttls(context=insecure_context())
        c.ehlo("client.test")
        assert c.has_extn("requiretls")
        assert c.mail("x@a.test", ["REQUIRETLS"])[0] == 250
        assert c.rcpt("auditor@b.test")[0] == 250
        assert c.data(MESSAGE)[0] == 250
        spool = Spool(config_b.resolve(Path("queue")), fsync=False)
        _wait(lambda: any(r.recipients[0].last_reply for r in spool.list()))
        [record] = spool.list()
    assert record.require_tls
    # B's next hop has no STARTTLS: the message waits, it is not sent in clear.
    assert record.recipients[0].last_reply.startswith("451 4.7.4")
    assert sink.messages() == []


def test_a_requiretls_message_crosses_two_gateways_over_verified_tls(workdir: Path, sink: SmtpSink) -> None:
    config_a, config_b = _setup(workdir, sink)
    with InProcessGateway(config_b), InProcessGateway(config_a):
        with smtplib.SMTP("127.0.0.1", _port(config_a), timeout=30) as c:
            c.ehlo("app.a.test")
            c.starttls(context=insecure_context())
            c.ehlo("app.a.test")
            c.sendmail("cfo@a.test", ["auditor@b.test"], MESSAGE, mail_options=["REQUIRETLS"])
        spool_b = Spool(config_b.resolve(Path("queue")), fsync=False)
        _wait(lambda: any(r.recipients[0].last_reply for r in spool_b.list()))
        [at_b] = spool_b.list()
    assert at_b.require_tls and at_b.mail_from == "cfo@a.test"
    [sent] = list(search(workdir / "a" / "log", event="SEND"))
    # A verified B's certificate and name because the sender asked for it, though A's connector
    # is only opportunistic.
    assert sent["detail"].startswith("TLSv1.") and "CA-valid, name matched (requiretls)" in sent["detail"]
    assert sink.messages() == []


def test_tls_required_no_does_not_override_requiretls(workdir: Path, sink: SmtpSink) -> None:
    _, config_b = _setup(workdir, sink)
    relaxed = b"TLS-Required: No\r\n" + MESSAGE
    with InProcessGateway(config_b), smtplib.SMTP("127.0.0.1", _port(config_b), timeout=30) as c:
        c.ehlo("client.test")
        c.starttls(context=insecure_context())
        c.ehlo("client.test")
        c.sendmail("x@a.test", ["auditor@b.test"], relaxed)
        c.sendmail("y@a.test", ["auditor@b.test"], relaxed, mail_options=["REQUIRETLS"])
        [delivered] = sink.wait_for(1)
        spool = Spool(config_b.resolve(Path("queue")), fsync=False)
        _wait(lambda: any(r.recipients[0].last_reply for r in spool.list()))
        [kept] = spool.list()
    assert b"X-Mail-Args: <x@a.test>" in delivered or b"x@a.test" in delivered
    # RFC 8689 §5: with both, REQUIRETLS wins; the header does not let the message go in clear.
    assert kept.mail_from == "y@a.test" and kept.require_tls and not kept.tls_optional
