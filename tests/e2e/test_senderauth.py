"""SPF, DKIM and DMARC in a running gateway, every answer from a real nsd on loopback.

The client is smtplib from 127.0.0.2 (the internet connector, anonymous); the mail is signed
by dkimpy with an Ed25519 key published in the zone. Checked: a passing message is stamped
with Received-SPF and our Authentication-Results (and the one a client forged under our name is
gone), a p=reject failure is refused 550 5.7.1, and a sender domain whose DNS fails (not
served by the only configured server, which refuses it) is stamped temperror and delivered.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from edgeward.senderauth.authresults import authserv_id
from tests.dnsserver import NSD, Nsd, start_nsd
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config
from tests.senderauth.dkimkeys import SigningKey, ed25519_key

pytestmark = pytest.mark.e2e

US = "mx.example.test"  # the harness's server.hostname, our authserv-id


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return ed25519_key()


@pytest.fixture(scope="module")
def nameserver(tmp_path_factory: pytest.TempPathFactory, key: SigningKey) -> Iterator[Nsd]:
    if NSD is None:
        pytest.skip("nsd is not installed (apt-get install -y nsd)")
    zone = f"""$ORIGIN auth.test.
$TTL 60
@ IN SOA ns.auth.test. admin.auth.test. 1 3600 600 86400 60
@ IN NS ns.auth.test.
ns IN A 127.0.0.1
@ IN TXT "v=spf1 ip4:127.0.0.2 -all"
s1._domainkey IN TXT "{key.record}"
_dmarc IN TXT "v=DMARC1; p=reject; adkim=r; aspf=r"
bank IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.bank IN TXT "v=DMARC1; p=reject"
"""
    server = start_nsd(Path(tmp_path_factory.mktemp("nsd")), {"auth.test": zone})
    try:
        yield server
    finally:
        server.stop()


def message(author: str, subject: str) -> bytes:
    return (
        f"From: Newsletter <{author}>\r\nTo: user@example.test\r\nSubject: {subject}\r\n"
        "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <n1@auth.test>\r\n\r\n"
        "Hello, the minutes of Tuesday's meeting are attached to the wiki page.\r\n"
    ).encode()


def send(port: int, sender: str, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=60) as c:
        c.ehlo("client.remote.test")
        c.mail(sender)
        c.rcpt("user@example.test")
        try:
            return c.data(data)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error


def head(data: bytes) -> list[tuple[str, str]]:
    text = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "replace")
    fields: list[tuple[str, str]] = []
    for line in text.split("\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + " " + line.strip())
        else:
            name, _, value = line.partition(":")
            fields.append((name, value.strip()))
    return fields


@pytest.fixture
def gateway(workdir: Path, sink: SmtpSink, nameserver: Nsd) -> Iterator[int]:
    port = free_port()
    config = gateway_config(
        workdir, port=port, sink_port=sink.port,
        dns={"servers": ["127.0.0.1"], "port": nameserver.port, "timeout": 2},
        spf={"enabled": True}, dmarc={"enabled": True},
    )  # fmt: skip
    with InProcessGateway(config):
        yield port


def test_signed_aligned_mail_is_stamped_and_forged_results_removed(
    gateway: int, sink: SmtpSink, key: SigningKey
) -> None:
    data = message("news@auth.test", "minutes")
    data = dkim.sign(data, b"s1", b"auth.test", key.private, signature_algorithm=key.algorithm) + data
    forged = b"Authentication-Results: MX.example.test; spf=pass smtp.mailfrom=bank.auth.test; dmarc=pass\r\n"
    code, _ = send(gateway, "news@auth.test", forged + data)
    assert code == 250
    [delivered] = sink.wait_for(1)
    fields = head(delivered)
    results = [v for n, v in fields if n.lower() == "authentication-results"]
    assert len(results) == 1 and authserv_id(results[0]) == US
    assert "spf=pass smtp.mailfrom=auth.test" in results[0]
    assert "dkim=pass" in results[0] and "header.d=auth.test" in results[0] and "dmarc=pass" in results[0]
    assert b"bank.auth.test" not in delivered
    # The MAIL FROM one; the HELO name (not in the test's zones) has a Received-SPF of its own.
    [spf] = [v for n, v in fields if n == "Received-SPF" and "identity=mailfrom" in v]
    assert spf.startswith("pass ") and "client-ip=127.0.0.2;" in spf
    report = dict(fields)["X-Edgeward-Antispam-Report"]
    assert "RULE:no threshold" in report


def test_dmarc_reject_policy_refuses_550_5_7_1(gateway: int, sink: SmtpSink) -> None:
    code, text = send(
        gateway, "alerts@bank.auth.test", message("alerts@bank.auth.test", "verify your account")
    )
    assert code == 550
    assert text.startswith(b"5.7.1 ") and b"DMARC policy of bank.auth.test" in text
    assert sink.messages() == []


def test_dns_failure_is_stamped_temperror_not_refused(gateway: int, sink: SmtpSink) -> None:
    code, _ = send(gateway, "news@elsewhere.test", message("news@elsewhere.test", "minutes"))
    assert code == 250
    [delivered] = sink.wait_for(1)
    fields = head(delivered)
    # The MAIL FROM one; the HELO name (not in the test's zones) has a Received-SPF of its own.
    [spf] = [v for n, v in fields if n == "Received-SPF" and "identity=mailfrom" in v]
    assert spf.startswith("temperror ")
    [results] = [v for n, v in fields if n.lower() == "authentication-results"]
    assert "spf=temperror" in results and "dmarc=temperror" in results


def test_a_signed_message_past_the_inline_budget_passes_and_a_changed_one_fails(
    gateway: int, sink: SmtpSink, key: SigningKey
) -> None:
    """Kept in a spool file as it arrives, the body is hashed in pieces (``senderauth.bodyhash``):
    it passes as in memory, and one character of a 2 MB body changed is a DKIM fail (DMARC
    still passes here on the aligned SPF pass)."""
    line = b"line %d of the quarterly report, with  spaces \t and tabs\r\n"
    body = b"".join(line % i for i in range(36000))
    data = message("news@auth.test", "big report").replace(b"Hello,", body + b"Hello,")
    assert len(data) > 2 * 1024 * 1024
    signed = dkim.sign(data, b"s1", b"auth.test", key.private, signature_algorithm=key.algorithm) + data
    assert send(gateway, "news@auth.test", signed)[0] == 250
    [delivered] = sink.wait_for(1)
    [results] = [v for n, v in head(delivered) if n.lower() == "authentication-results"]
    assert "dkim=pass" in results and "dmarc=pass" in results
    changed = signed.replace(b"line 30000 of the", b"line 30000 of thy")
    assert send(gateway, "news@auth.test", changed)[0] == 250
    [tampered] = [m for m in sink.wait_for(2) if b"line 30000 of thy" in m]
    [results] = [v for n, v in head(tampered) if n.lower() == "authentication-results"]
    assert "dkim=fail" in results and "spf=pass" in results
