"""Smart-host AUTH: sent only inside TLS, refused credentials defer, and a verify mode that fails
never falls back to clear text. Against aiosmtpd downstreams over loopback."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword

from edgeward.config.schema import SendConnectorConfig
from edgeward.delivery.client import SmtpClient
from edgeward.delivery.results import Deferred, Delivered
from edgeward.delivery.routing import Route
from edgeward.queue.model import MessageRecord, RecipientRecord
from tests.delivery.conftest import free_port
from tests.smtpdownstream import ClosingController as Controller

MESSAGE = b"Subject: via smart host\r\n\r\nbody\r\n"


class Handler:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.content)
        return "250 2.0.0 OK"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"relay", b"s3cret")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _downstream(ca: trustme.CA, *, starttls: bool = True) -> tuple[Controller, Handler, int]:
    handler = Handler()
    context = None
    if starttls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(context)
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=starttls,
        authenticator=_authenticator, auth_require_tls=True,
    )  # fmt: skip
    controller.start()
    return controller, handler, port


async def _deliver(connector: SendConnectorConfig, password: str) -> Delivered | Deferred | object:
    client = SmtpClient(connector, helo_name="mx.example.test", password=password)
    record = MessageRecord("MSG1", "a@example.test", (RecipientRecord("b@dst.test"),), 0.0, len(MESSAGE))
    try:
        result = await client.deliver(Route(connector, "hub"), record, record.recipients, MESSAGE)
    finally:
        await client.close()
    return result["b@dst.test"]


def _connector(port: int, ca_file: Path, tls: str = "verify_hostname") -> SendConnectorConfig:
    return SendConnectorConfig(
        name="hub", address_spaces=("*",), smart_hosts=(f"localhost:{port}",), tls=tls,  # type: ignore[arg-type]
        tls_ca_file=ca_file, auth_username="relay", auth_password_file=Path("/dev/null"),
    )  # fmt: skip


async def test_auth_over_verified_tls_delivers(ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    controller, handler, port = _downstream(ca)
    try:
        result = await _deliver(_connector(port, ca_file), "s3cret")
    finally:
        controller.stop()
    assert isinstance(result, Delivered)
    assert handler.received and b"via smart host" in handler.received[0]


async def test_wrong_password_defers_for_the_administrator_to_fix(ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    controller, handler, port = _downstream(ca)
    try:
        result = await _deliver(_connector(port, ca_file), "wrong")
    finally:
        controller.stop()
    assert isinstance(result, Deferred) and result.reply.enhanced == "4.7.8"
    assert handler.received == []


async def test_no_starttls_means_no_auth_and_no_delivery(ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    controller, handler, port = _downstream(ca, starttls=False)
    try:
        result = await _deliver(_connector(port, ca_file, tls="required"), "s3cret")
    finally:
        controller.stop()
    assert isinstance(result, Deferred) and result.reply.enhanced == "4.7.4"
    assert handler.received == []


async def test_untrusted_certificate_defers_with_4_7_5(tmp_path: Path) -> None:
    other = trustme.CA()
    ca_file = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(str(ca_file))
    controller, handler, port = _downstream(trustme.CA())
    try:
        result = await _deliver(_connector(port, ca_file), "s3cret")
    finally:
        controller.stop()
    assert isinstance(result, Deferred) and result.reply.enhanced == "4.7.5"
    assert handler.received == []
