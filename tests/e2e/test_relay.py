"""End to end over loopback: real clients, a real gateway, Postfix's smtp-sink downstream."""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from edgeward.tls.store import CertificateStore
from tests.e2e.harness import SWAKS, InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e

CORPORA = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "smtp"
MESSAGE = (
    b"From: a@remote.test\r\nTo: b@example.test\r\nSubject: hello\r\nMessage-ID: <m1@remote.test>\r\n"
    b"\r\nbody line\r\n.starts with a dot\r\n"
)


def _client(port: int, source: str = "127.0.0.2") -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30)


def test_mail_for_accepted_domain_is_relayed_to_the_downstream(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    with InProcessGateway(gateway_config(workdir, port=port, sink_port=sink.port)), _client(port) as c:
        c.ehlo("client.remote.test")
        assert c.has_extn("starttls") and c.has_extn("pipelining") and c.has_extn("chunking")
        assert c.has_extn("size") and int(c.esmtp_features["size"]) == 10 * 1024 * 1024
        c.mail("a@remote.test")
        code, _ = c.rcpt("b@example.test")
        assert code == 250
        code, text = c.data(MESSAGE)
        assert code == 250 and b"2.0.0" in text and b"queued as" in text
        [received] = sink.wait_for(1)
    assert b"Received: from client.remote.test ([127.0.0.2])" in received
    assert b"by mx.example.test (Edgeward) with ESMTP" in received
    # The leading dot was unstuffed on receipt and stuffed again on the way out.
    assert b"\nbody line\n.starts with a dot\n" in received


def test_relay_is_denied_to_a_source_without_relay_rights(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    with InProcessGateway(gateway_config(workdir, port=port, sink_port=sink.port)), _client(port) as c:
        c.ehlo("client.remote.test")
        c.mail("a@remote.test")
        code, text = c.rcpt("victim@elsewhere.test")
        assert (code, text[:5]) == (550, b"5.7.1")


def test_relay_is_allowed_from_the_permitted_range(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    with (
        InProcessGateway(gateway_config(workdir, port=port, sink_port=sink.port)),
        _client(port, "127.0.0.1") as c,
    ):
        c.ehlo("app.internal.test")
        c.mail("app@example.test")
        assert c.rcpt("someone@elsewhere.test")[0] == 250
        assert c.data(MESSAGE)[0] == 250
        assert len(sink.wait_for(1)) == 1


def test_no_open_relay_probe_form_is_accepted(workdir: Path, sink: SmtpSink) -> None:
    path = CORPORA / "open-relay-address-forms.json"
    if not path.exists():
        pytest.skip(f"shared corpora not found at {path}")
    forms = json.loads(path.read_text())["tests"]
    port = free_port()
    values = {"from": "antispam", "to": "relaytest", "domain": "evil.test", "ip": "127.0.0.1",
              "srvname": "mx.example.test"}  # fmt: skip
    accepted = []
    with InProcessGateway(gateway_config(workdir, port=port, sink_port=sink.port)):
        for form in forms:
            with _client(port) as c:
                c.ehlo("probe.evil.test")
                sender = form["mail_from"].format(**values)
                rcpt = form["rcpt_to"].format(**values)
                if c.docmd(f"MAIL FROM:<{sender}>")[0] != 250:
                    continue
                code, _ = c.docmd(f"RCPT TO:<{rcpt}>")
                if code == 250:
                    accepted.append(rcpt)
    assert accepted == []


def test_starttls_verifies_against_the_init_certificate(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = gateway_config(workdir, port=port, sink_port=sink.port)
    with InProcessGateway(config), _client(port) as c:
        cert, _ = CertificateStore(config.resolve(config.tls.store)).binding_for("smtp")
        context = ssl.create_default_context(cafile=str(cert))
        c._host = "mx.example.test"  # the name to verify; we connect to 127.0.0.1
        c.ehlo("client.remote.test")
        c.starttls(context=context)
        assert isinstance(c.sock, ssl.SSLSocket)
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        c.ehlo("client.remote.test")
        assert not c.has_extn("starttls")
        c.mail("a@remote.test")
        c.rcpt("b@example.test")
        assert c.data(MESSAGE)[0] == 250
        [received] = sink.wait_for(1)
    assert b"with ESMTPS" in received


def test_commands_pipelined_behind_starttls_are_discarded(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    with InProcessGateway(gateway_config(workdir, port=port, sink_port=sink.port)):
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        f = raw.makefile("rb")
        assert f.readline().startswith(b"220")
        raw.sendall(b"EHLO x.test\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        raw.sendall(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
        assert f.readline().startswith(b"220 2.0.0")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        tls = context.wrap_socket(raw, server_hostname="mx.example.test")
        tf = tls.makefile("rb")
        tls.sendall(b"RCPT TO:<b@example.test>\r\n")
        # Had the injected MAIL survived, RCPT would be accepted; after the reset it is out of order.
        assert tf.readline().startswith(b"503")
        tls.sendall(b"QUIT\r\n")
        assert tf.readline().startswith(b"221")
        tf.close()
        f.close()
        tls.close()


@pytest.mark.parametrize("index", range(12))
def test_smuggled_end_of_data_never_splits_a_message(workdir: Path, sink: SmtpSink, index: int) -> None:
    path = CORPORA / "smtp-smuggling-eod-sequences.json"
    if not path.exists():
        pytest.skip(f"shared corpora not found at {path}")
    sequences = json.loads(path.read_text())["sequences"]
    if index >= len(sequences):
        pytest.skip("fewer sequences in the corpus")
    fake_end = bytes.fromhex(sequences[index]["hex"])
    smuggled = (
        b"mail FROM:<admin@example.test>\r\nrcpt TO:<b@example.test>\r\ndata\r\n"
        b"From: admin@example.test\r\nSubject: smuggled\r\n\r\nspoofed\r\n"
    )
    port = free_port()
    with InProcessGateway(gateway_config(workdir, port=port, sink_port=sink.port)):
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"HELO x.test\r\n")
        f.readline()
        raw.sendall(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
        replies = [f.readline() for _ in range(3)]
        assert replies[2].startswith(b"354")
        first = b"From: a@remote.test\r\nSubject: first\r\n\r\nhello"
        raw.sendall(first + fake_end + smuggled + b"\r\n.\r\n")
        final = f.readline()
        raw.sendall(b"QUIT\r\n")
        rest = f.read()
        f.close()
        raw.close()
        accepted = final.startswith(b"250")
        if accepted:
            [message] = sink.wait_for(1)
            assert b"Subject: first" in message
    # Whatever the verdict, the smuggled transaction never became a message of its own.
    assert rest.count(b"250 2.0.0 OK queued") == 0
    assert all(b"Subject: smuggled" not in m.split(b"\r\n\r\n", 1)[0] for m in sink.messages())


def test_back_pressure_refuses_new_mail_with_452(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = gateway_config(workdir, port=port, sink_port=sink.port, queue={"min_free_disk": "100000GB"})
    with InProcessGateway(config), _client(port) as c:
        c.ehlo("client.remote.test")
        code, text = c.mail("a@remote.test")
        assert (code, text[:5]) == (452, b"4.3.1")


@pytest.mark.skipif(SWAKS is None, reason="swaks is not installed (scripts/install-test-deps.sh installs it)")
def test_swaks_with_starttls_and_pipelining(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    with InProcessGateway(gateway_config(workdir, port=port, sink_port=sink.port)):
        out = subprocess.run(
            [str(SWAKS), "--server", f"127.0.0.1:{port}", "--tls", "--pipeline",
             "--helo", "swaks.remote.test", "--from", "a@remote.test", "--to", "b@example.test",
             "--header", "Subject: via swaks"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert "queued as" in out.stdout
        [message] = sink.wait_for(1)
    assert b"Subject: via swaks" in message
    assert b"with ESMTPS" in message


def test_rcpt_to_bare_postmaster_is_accepted(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    with InProcessGateway(gateway_config(workdir, port=port, sink_port=sink.port)), _client(port) as c:
        c.ehlo("client.remote.test")
        c.mail("a@remote.test")
        assert c.docmd("RCPT TO:<Postmaster>")[0] == 250
        assert c.data(MESSAGE)[0] == 250
        [message] = sink.wait_for(1)
    assert b"postmaster@example.test" in message
