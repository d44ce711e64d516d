"""Connectors with authentication: AUTH after STARTTLS, submission, implicit TLS, domain security."""

from __future__ import annotations

import base64
import smtplib
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme

from edgeward.auth.addresses import AccountAddresses
from edgeward.auth.users import UserStore
from edgeward.logs.tracking import search
from edgeward.state.sqlite import StateStore, default_db_path
from tests.e2e.harness import SWAKS, InProcessGateway, SmtpSink, free_port, gateway_config, insecure_context

pytestmark = pytest.mark.e2e

MESSAGE = b"From: alice@example.test\r\nSubject: authenticated\r\n\r\nhello\r\n"


def _with_user(workdir: Path) -> None:
    state = StateStore(default_db_path(workdir))
    state.connect()
    try:
        UserStore(state).add("alice", "correct horse battery staple")
        AccountAddresses(state).add("alice", "alice@example.test")
    finally:
        state.close()


def _auth_config(workdir: Path, port: int, sink: SmtpSink, **connector: Any) -> Any:
    settings: dict[str, Any] = {
        "auth_mechanisms": ["PLAIN", "LOGIN"],
        "permission_groups": ["anonymous", "users"],
        "auth_tarpit_interval": 0,
        **connector,
    }
    return gateway_config(workdir, port=port, sink_port=sink.port, connector=settings)


def _plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def test_auth_is_refused_before_starttls_and_works_after(workdir: Path, sink: SmtpSink) -> None:
    _with_user(workdir)
    port = free_port()
    with InProcessGateway(_auth_config(workdir, port, sink)):
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
            c.ehlo("client.test")
            assert not c.has_extn("auth")
            code, text = c.docmd("AUTH", "PLAIN " + _plain("alice", "correct horse battery staple"))
            assert (code, text[:5]) == (530, b"5.7.0")
            c.starttls(context=insecure_context())
            c.ehlo("client.test")
            assert c.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
            c.login("alice", "correct horse battery staple")
            # Authenticated users may relay, as their own address.
            c.mail("alice@example.test")
            assert c.rcpt("bob@elsewhere.test")[0] == 250
            assert c.data(MESSAGE)[0] == 250
        [message] = sink.wait_for(1)
    assert b"with ESMTPSA" in message


def test_wrong_passwords_lock_the_source_out(workdir: Path, sink: SmtpSink) -> None:
    _with_user(workdir)
    port = free_port()
    with InProcessGateway(_auth_config(workdir, port, sink, max_logon_failures=3)):
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
            c.starttls(context=insecure_context())
            c.ehlo("client.test")
            replies = [c.docmd("AUTH", "PLAIN " + _plain("alice", f"wrong{i}")) for i in range(3)]
        assert [r[0] for r in replies[:2]] == [535, 535] and replies[0][1][:5] == b"5.7.8"
        assert replies[2][0] == 421  # the third failure closes the connection
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
            c.starttls(context=insecure_context())
            c.ehlo("client.test")
            code, _ = c.docmd("AUTH", "PLAIN " + _plain("alice", "correct horse battery staple"))
            assert code == 454  # locked out, even with the right password
        # Another source is not affected.
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.3", 0), timeout=30) as c:
            c.starttls(context=insecure_context())
            c.ehlo("client.test")
            c.login("alice", "correct horse battery staple")


def test_unknown_user_and_wrong_password_get_the_same_answer(workdir: Path, sink: SmtpSink) -> None:
    _with_user(workdir)
    port = free_port()
    with (
        InProcessGateway(_auth_config(workdir, port, sink, max_logon_failures=5)),
        smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c,
    ):
        c.starttls(context=insecure_context())
        c.ehlo("client.test")
        unknown = c.docmd("AUTH", "PLAIN " + _plain("mallory", "x"))
        wrong = c.docmd("AUTH", "PLAIN " + _plain("alice", "x"))
    assert unknown == wrong


def test_submission_requires_auth_before_mail(workdir: Path, sink: SmtpSink) -> None:
    _with_user(workdir)
    port = free_port()
    with (
        InProcessGateway(_auth_config(workdir, port, sink, require_auth=True, require_tls=True)),
        smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c,
    ):
        c.ehlo("client.test")
        assert c.mail("a@remote.test")[0] == 530  # TLS first
        c.starttls(context=insecure_context())
        c.ehlo("client.test")
        code, text = c.mail("a@remote.test")
        assert (code, text[:5]) == (530, b"5.7.0")


def test_implicit_tls_listener(workdir: Path, sink: SmtpSink) -> None:
    _with_user(workdir)
    port = free_port()
    with InProcessGateway(_auth_config(workdir, port, sink, implicit_tls=True)):
        context = insecure_context()
        with smtplib.SMTP_SSL("127.0.0.1", port, source_address=("127.0.0.2", 0), context=context) as c:
            c.ehlo("client.test")
            assert not c.has_extn("starttls")
            c.login("alice", "correct horse battery staple")
            c.mail("alice@example.test")
            c.rcpt("bob@elsewhere.test")
            assert c.data(MESSAGE)[0] == 250
        [message] = sink.wait_for(1)
    assert b"with ESMTPSA" in message


@pytest.mark.skipif(SWAKS is None, reason="swaks is not installed (scripts/install-test-deps.sh installs it)")
def test_swaks_auth_login_after_starttls(workdir: Path, sink: SmtpSink) -> None:
    _with_user(workdir)
    port = free_port()
    with InProcessGateway(_auth_config(workdir, port, sink)):
        out = subprocess.run(
            [str(SWAKS), "--server", f"127.0.0.1:{port}", "--tls", "--auth", "LOGIN", "--auth-user", "alice",
             "--auth-password", "correct horse battery staple", "--from", "alice@example.test",
             "--to", "bob@elsewhere.test", "--local-interface", "127.0.0.2"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert "235 2.7.0" in out.stdout
        assert len(sink.wait_for(1)) == 1


@pytest.fixture
def partner_pki(workdir: Path) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    path = workdir / "partners-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


def _partner_config(workdir: Path, port: int, sink: SmtpSink, ca_path: Path) -> Any:
    return gateway_config(
        workdir, port=port, sink_port=sink.port,
        connector={"client_ca": str(ca_path), "domain_secure_partners": ["partner.test"],
                   "permission_groups": ["anonymous", "partners"]},
    )  # fmt: skip


def _client_with_cert(ca: trustme.CA, name: str) -> ssl.SSLContext:
    context = insecure_context()
    ca.issue_cert(name).configure_cert(context)
    return context


def test_domain_security_accepts_the_partner_certificate(
    workdir: Path, sink: SmtpSink, partner_pki: tuple[trustme.CA, Path]
) -> None:
    ca, ca_path = partner_pki
    port = free_port()
    with (
        InProcessGateway(_partner_config(workdir, port, sink, ca_path)),
        smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c,
    ):
        c.starttls(context=_client_with_cert(ca, "partner.test"))
        c.ehlo("mx.partner.test")
        assert c.mail("orders@partner.test")[0] == 250
        assert c.rcpt("b@example.test")[0] == 250
        assert c.data(MESSAGE)[0] == 250
        [message] = sink.wait_for(1)
    assert b"with ESMTPS" in message
    assert b"(client certificate for partner.test verified)" in message
    [received] = list(search(workdir / "log", event="RECEIVE"))
    assert "tls=TLSv1." in received["detail"] and "client certificate=partner.test" in received["detail"]


@pytest.mark.parametrize("case", ["no-tls", "no-certificate", "wrong-ca", "wrong-name"])
def test_domain_security_refuses_a_partner_without_a_valid_certificate(
    workdir: Path, sink: SmtpSink, partner_pki: tuple[trustme.CA, Path], case: str
) -> None:
    ca, ca_path = partner_pki
    port = free_port()
    contexts = {
        "no-certificate": insecure_context(),
        "wrong-ca": _client_with_cert(trustme.CA(), "partner.test"),
        "wrong-name": _client_with_cert(ca, "other.test"),
    }
    with InProcessGateway(_partner_config(workdir, port, sink, ca_path)):
        try:
            with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
                if case != "no-tls":
                    c.starttls(context=contexts[case])
                c.ehlo("mx.partner.test")
                code, text = c.mail("orders@partner.test")
        except (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError):
            # OpenSSL may end the handshake itself when a certificate does not verify.
            assert case == "wrong-ca"
            return
    expected = (530, b"5.7.0") if case == "no-tls" else (454, b"4.7.0")
    assert (code, text[:5]) == expected
