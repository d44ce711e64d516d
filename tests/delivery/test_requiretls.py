"""REQUIRETLS (RFC 8689) on the sending side, against real downstream servers on loopback.

A REQUIRETLS message goes only over TLS whose certificate is authenticated (CA-valid and naming
the host), only to a next hop that offers REQUIRETLS itself, and never in clear. The receiving
side and the full two-gateway path are in tests/e2e/test_requiretls.py.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trustme

from edgeward.config.schema import SendConnectorConfig
from edgeward.delivery.client import SmtpClient
from edgeward.delivery.results import Deferred, Delivered, Failed, RecipientResult
from edgeward.delivery.routing import Route
from edgeward.queue.model import MessageRecord, RecipientRecord

from .conftest import Downstream

MESSAGE = b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: secret\r\n\r\nconfidential\r\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ssl.SSLContext, Path]]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield server, ca_file


def _connector(port: int, **kw: object) -> SendConnectorConfig:
    return SendConnectorConfig(
        name="out", address_spaces=("*",), smart_hosts=(f"localhost:{port}",),  # type: ignore[arg-type]
        connect_timeout=5, command_timeout=10, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def _record(require_tls: bool = True, tls_optional: bool = False) -> MessageRecord:
    return MessageRecord(
        "MSG1", "a@src.test", (RecipientRecord("b@dst.test"),), time.time(), len(MESSAGE),
        require_tls=require_tls, tls_optional=tls_optional,
    )  # fmt: skip


async def _send(conn: SendConnectorConfig, rec: MessageRecord) -> RecipientResult:
    client = SmtpClient(conn, helo_name="gw.src.test")
    try:
        got = await client.deliver(Route(conn, "out"), rec, rec.recipients, MESSAGE)
    finally:
        await client.close()
    return got["b@dst.test"]


async def test_requiretls_is_never_sent_in_clear(downstream: Callable[..., Downstream]) -> None:
    ds = downstream()  # no STARTTLS at all
    result = await _send(_connector(ds.port), _record())
    assert isinstance(result, Deferred) and result.reply.enhanced == "4.7.4"
    assert "requiretls" in result.reply.text
    assert ds.handler.messages == []


async def test_requiretls_refuses_an_unauthenticated_certificate(
    downstream: Callable[..., Downstream], pki: tuple[ssl.SSLContext, Path]
) -> None:
    server, _ = pki
    ds = downstream(tls_context=server)
    # The connector would take any certificate, but the sender asked for an authenticated one:
    # without the CA that issued it, the certificate does not verify.
    result = await _send(_connector(ds.port, tls="required"), _record())
    assert isinstance(result, Deferred) and result.reply.enhanced == "4.7.5"
    assert ds.handler.messages == []


async def test_requiretls_fails_at_a_next_hop_without_requiretls(
    downstream: Callable[..., Downstream], pki: tuple[ssl.SSLContext, Path]
) -> None:
    server, ca_file = pki
    ds = downstream(tls_context=server)
    result = await _send(_connector(ds.port, tls_ca_file=ca_file), _record())
    # RFC 8689 §5: 5.7.30, permanent; the message did not leave.
    assert isinstance(result, Failed) and result.reply.code == 550 and result.reply.enhanced == "5.7.30"
    assert ds.handler.messages == []


async def test_the_same_next_hop_takes_mail_without_requiretls(
    downstream: Callable[..., Downstream], pki: tuple[ssl.SSLContext, Path]
) -> None:
    server, ca_file = pki
    ds = downstream(tls_context=server)
    result = await _send(_connector(ds.port, tls_ca_file=ca_file), _record(require_tls=False))
    assert isinstance(result, Delivered)
    # The SEND detail says how the message travelled.
    assert result.detail.startswith("TLSv1.") and ", peer " in result.detail
    assert result.detail.endswith("not verified")  # opportunistic: encrypted, certificate not checked
    assert ds.handler.messages[0].tls and "REQUIRETLS" not in ds.handler.messages[0].mail_options


async def test_a_verifying_connector_records_how_the_peer_was_authenticated(
    downstream: Callable[..., Downstream], pki: tuple[ssl.SSLContext, Path]
) -> None:
    server, ca_file = pki
    ds = downstream(tls_context=server)
    conn = _connector(ds.port, tls="verify_hostname", tls_ca_file=ca_file)
    result = await _send(conn, replace(_record(), require_tls=False))
    assert isinstance(result, Delivered)
    assert result.detail.startswith("TLSv1.")
    assert "CA-valid, name matched" in result.detail
