"""Site learning in a running gateway: replies, correspondents, reports and traps teach the model.

Real parts only: the gateway in-process on loopback, smtplib clients (127.0.0.1 is the relay
connector, a local user; 127.0.0.2 the internet), Postfix's smtp-sink downstream, nsd serving
the SPF, DKIM and DMARC records of the outside correspondent's domain, dkimpy signing its mail,
and ``edgeward spam status`` run as a separate process to read what was learned.
"""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest

from edgeward.logs.tracking import search
from tests.dnsserver import NSD, Nsd, start_nsd
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config
from tests.senderauth.dkimkeys import SigningKey, ed25519_key

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[1] / "content" / "data"
# SCL 9 for the shipped model, with no phishing cue.
SPAMMY = (
    "Dear friend,\r\n\r\nFREE MONEY guaranteed! Earn $5000 a week from home, no experience needed."
    " Act now, this limited time offer expires tonight. Order today and get 80% off, risk free, 100%"
    " satisfaction. Cheap meds, lose weight fast, casino bonus.\r\nTo be removed reply REMOVE.\r\n"
)
REPORTS = "spam@example.test"
TRAP = "trap@example.test"


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
"""
    server = start_nsd(Path(tmp_path_factory.mktemp("nsd")), {"auth.test": zone})
    try:
        yield server
    finally:
        server.stop()


class Site:
    """A gateway with site learning on, and the command line pointed at its data folder."""

    def __init__(self, gateway: InProcessGateway, port: int, config_path: Path, workdir: Path) -> None:
        self.gateway, self.port, self.config_path, self.workdir = gateway, port, config_path, workdir

    def send(self, source: str, sender: str, rcpts: list[str], data: bytes) -> int:
        with smtplib.SMTP("127.0.0.1", self.port, source_address=(source, 0), timeout=60) as c:
            c.ehlo("client.auth.test")
            c.mail(sender)
            for rcpt in rcpts:
                c.rcpt(rcpt)
            try:
                return c.data(data)[0]
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code

    def local(self, rcpts: list[str], data: bytes, sender: str = "user@example.test") -> int:
        return self.send("127.0.0.1", sender, rcpts, data)

    def outside(self, sender: str, data: bytes, rcpts: list[str] | None = None) -> int:
        return self.send("127.0.0.2", sender, rcpts or ["user@example.test"], data)

    def settle(self) -> None:
        """Wait until the learning worker has done everything queued so far."""
        gw = self.gateway.gateway
        assert gw is not None and gw.learner is not None
        assert self.gateway.call(gw.learner.drain(60), 90)

    def status(self) -> dict[str, Any]:
        command = [sys.executable, "-m", "edgeward", "spam", "status", "-c", str(self.config_path), "--json"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def remembered(self, key: str) -> str | None:
        gw = self.gateway.gateway
        assert gw is not None and gw.policy_store is not None
        value: str | None = self.gateway.call(gw.policy_store.get(key))
        return value


@pytest.fixture
def learning() -> dict[str, Any]:
    return {"spam_report_address": [REPORTS], "trap_addresses": [TRAP]}


@pytest.fixture
def site(workdir: Path, sink: SmtpSink, nameserver: Nsd, learning: dict[str, Any]) -> Iterator[Site]:
    port = free_port()
    config = gateway_config(
        workdir, port=port, sink_port=sink.port,
        dns={"servers": ["127.0.0.1"], "port": nameserver.port, "timeout": 2},
        spf={"enabled": True}, dmarc={"enabled": True},
        agents={"content_filter": {"refresh_interval": 0}}, learning=learning,
    )  # fmt: skip
    config_path = workdir / "edgeward.toml"
    config_path.write_text(
        f"accepted_domains = ['example.test']\n[server]\ndata_dir = '{workdir}'\n"
        f"[learning]\nenabled = {str(learning.get('enabled', True)).lower()}\n"
    )
    with InProcessGateway(config) as gateway:
        yield Site(gateway, port, config_path, workdir)


def message(author: str, to: str, subject: str, message_id: str, extra: str = "", body: str = "") -> bytes:
    text = body or "Thanks for the notes, I will bring the figures to Thursday's meeting.\r\n"
    return (
        f"From: {author}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{message_id}>\r\n{extra}\r\n{text}"
    ).encode()


def signed(data: bytes, key: SigningKey) -> bytes:
    return dkim.sign(data, b"s1", b"auth.test", key.private, signature_algorithm=key.algorithm) + data


def report_fields(delivered: bytes) -> dict[str, str]:
    for line in delivered.split(b"\n"):
        if line.startswith(b"X-Edgeward-Antispam-Report:"):
            value = line.split(b":", 1)[1].strip().decode()
            return dict(part.split(":", 1) for part in value.split(";"))
    raise AssertionError("no anti-spam report header")


def only(sink: SmtpSink, count: int, needle: bytes) -> bytes:
    return next(m for m in sink.wait_for(count) if needle in m)


def test_replies_and_correspondents_of_local_users_are_learned_as_ham(
    site: Site, sink: SmtpSink, key: SigningKey
) -> None:
    sent = message("User <user@example.test>", "friend@auth.test", "figures", "out1@example.test")
    assert site.local(["friend@auth.test"], sent) == 250
    site.settle()
    assert site.remembered("sent:out1@example.test") == "user@example.test"
    assert site.remembered("corr:user@example.test|friend@auth.test") is not None

    reply = message("Friend <friend@auth.test>", "user@example.test", "Re: figures", "r1@auth.test",
                    "In-Reply-To: <out1@example.test>\r\nReferences: <out1@example.test>\r\n")  # fmt: skip
    assert site.outside("friend@auth.test", signed(reply, key)) == 250
    fresh = message("Friend <friend@auth.test>", "user@example.test", "lunch", "n1@auth.test")
    assert site.outside("friend@auth.test", signed(fresh, key)) == 250
    site.settle()

    scored = report_fields(only(sink, 3, b"r1@auth.test"))["S"]
    assert "REPLY_TO_LOCAL@eod=-3" in scored
    assert "KNOWN_CORRESPONDENT@eod=-3" in report_fields(only(sink, 3, b"n1@auth.test"))["S"]

    # Content alone does not refuse a correspondent, as it refuses a stranger of the same
    # domain; and such a conflict is delivered without being learned as ham.
    offer = message("Friend <friend@auth.test>", "user@example.test", "FREE", "s1@auth.test", body=SPAMMY)
    assert site.outside("friend@auth.test", signed(offer, key)) == 250
    stranger = message("X <stranger@auth.test>", "user@example.test", "FREE", "s2@auth.test", body=SPAMMY)
    assert site.outside("stranger@auth.test", signed(stranger, key)) == 550
    site.settle()
    fields = report_fields(only(sink, 4, b"s1@auth.test"))
    assert fields["SCL"] == "9" and "KNOWN_CORRESPONDENT@eod=-3" in fields["S"]
    status = site.status()
    assert status["learned"]["reply"]["ham"] == 1 and status["learned"]["reply"]["last"]
    assert status["learned"]["correspondent"]["ham"] == 1
    assert status["origin"]["source"] == "live" and status["origin"]["live_version"] >= 1
    assert status["queue"]["pending"] == 0 and status["queue"]["dropped"] == 0


def test_a_forged_in_reply_to_without_passing_authentication_teaches_nothing(
    site: Site, sink: SmtpSink
) -> None:
    sent = message("User <user@example.test>", "friend@auth.test", "figures", "out2@example.test")
    assert site.local(["friend@auth.test"], sent) == 250
    site.settle()
    # elsewhere.test is not served: SPF and DMARC give temperror, so the author is unproven.
    forged = message("Friend <friend@elsewhere.test>", "user@example.test", "Re: figures",
                     "f1@elsewhere.test", "In-Reply-To: <out2@example.test>\r\n")  # fmt: skip
    assert site.outside("friend@elsewhere.test", forged) == 250
    site.settle()
    delivered = only(sink, 2, b"f1@elsewhere.test")
    assert b"REPLY_TO_LOCAL" not in delivered
    status = site.status()
    assert status["learned"]["reply"] == {"ham": 0, "spam": 0, "last": ""}
    assert status["origin"]["live_version"] == 0


def _borderline() -> bytes:
    ham = (DATA / "ham.eml").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    # Between ham and spam for the shipped model, so one lesson moves it visibly.
    return ham.replace(b"Thanks,", b"Order our new service today, special offer for you.\r\nThanks,")


def spam_report(received: bytes, subject: str = "Spam report") -> bytes:
    report = EmailMessage()
    report["From"] = "user@example.test"
    report["To"] = REPORTS
    report["Subject"] = subject
    report["Message-ID"] = "<report1@example.test>"
    report.set_content("This one is spam.\n")
    report.add_attachment(email.message_from_bytes(received, policy=email.policy.default))
    return report.as_bytes(policy=email.policy.SMTP)


def test_a_local_users_report_is_learned_as_spam_and_the_running_gateway_scores_it_higher(
    site: Site, sink: SmtpSink
) -> None:
    sample = _borderline()
    assert site.outside("sender@remote.test", sample) == 250
    [first] = sink.wait_for(1)
    # The user forwards what they received, our stamps included, as an attachment.
    assert site.local([REPORTS], spam_report(first)) == 250
    site.settle()
    assert site.outside("sender@remote.test", sample) == 250
    messages = sink.wait_for(2)
    assert not any(b"Spam report" in m for m in messages)  # the report itself is not delivered
    second = next(m for m in messages if m != first)
    assert float(report_fields(second)["P"]) > float(report_fields(first)["P"]) + 0.01
    [ack] = [e for e in search(site.workdir / "log", event="DISCARD") if REPORTS in e["recipients"]]
    assert any("SPAM_REPORT" in str(f) for f in ack["findings"])
    status = site.status()
    assert status["learned"]["report"]["spam"] == 1
    assert status["origin"]["live_version"] >= 1


def test_an_outsiders_report_is_ignored_and_delivered_as_ordinary_mail(site: Site, sink: SmtpSink) -> None:
    assert site.outside("sender@remote.test", spam_report(_borderline(), "Outside report"), [REPORTS]) == 250
    site.settle()
    [delivered] = sink.wait_for(1)
    assert b"Outside report" in delivered
    assert site.status()["learned"]["report"]["spam"] == 0


def test_mail_to_a_trap_is_discarded_and_learned_as_spam(site: Site, sink: SmtpSink) -> None:
    spam = (DATA / "spam.eml").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert site.outside("bulk@remote.test", spam, [TRAP, "user@example.test"]) == 250
    site.settle()
    [dropped] = [e for e in search(site.workdir / "log", event="DISCARD") if TRAP in e["recipients"]]
    assert any("TRAP_HIT" in str(f) for f in dropped["findings"])
    assert not [e for e in search(site.workdir / "log", event="RECEIVE") if e["msg_id"] == dropped["msg_id"]]
    status = site.status()
    assert status["learned"]["trap"]["spam"] == 1


@pytest.mark.parametrize("learning", [{"enabled": False, "trap_addresses": [TRAP]}])
def test_learning_off_learns_and_remembers_nothing(site: Site, sink: SmtpSink, key: SigningKey) -> None:
    sent = message("User <user@example.test>", "friend@auth.test", "figures", "out3@example.test")
    assert site.local(["friend@auth.test"], sent) == 250
    reply = message("Friend <friend@auth.test>", "user@example.test", "Re: figures", "r3@auth.test",
                    "In-Reply-To: <out3@example.test>\r\n")  # fmt: skip
    assert site.outside("friend@auth.test", signed(reply, key)) == 250
    assert site.outside("bulk@remote.test", _borderline(), [TRAP]) == 250
    site.settle()
    sink.wait_for(2)
    # Traps are still never delivered; they only stop teaching.
    assert [e for e in search(site.workdir / "log", event="DISCARD") if TRAP in e["recipients"]]
    assert site.remembered("sent:out3@example.test") is None
    status = site.status()
    assert status["learning"]["enabled"] is False
    assert all(row["ham"] == row["spam"] == 0 for row in status["learned"].values())
    assert status["origin"]["source"] == "file"
