"""Helpers for the TLS tests: a fake clock, a CA that signs CSRs, and a one-shot TLS server."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from edgeward.tls.context import TLSInfo, describe


@dataclass
class FakeClock:
    """A Clock (edgeward.ports) whose time the test sets."""

    moment: datetime = field(default_factory=lambda: datetime.now(UTC))

    def now(self) -> float:
        return self.moment.timestamp()

    def advance(self, days: int) -> None:
        self.moment += timedelta(days=days)


def sign_csr(
    ca: trustme.CA,
    csr_pem: bytes,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> bytes:
    """What a CA does with a request: copy its names and key into a certificate it signs."""
    csr = x509.load_pem_x509_csr(csr_pem)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    start = not_before or datetime.now(UTC) - timedelta(hours=1)
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(san, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class ServerResult:
    info: TLSInfo | None = None
    error: BaseException | None = None


class OneShotServer:
    """Accepts one TLS connection on 127.0.0.1, sends b"ok", records what happened."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(30)  # a guard against a hung test, not a measurement
        self.port = self.listener.getsockname()[1]
        self.result = ServerResult()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(30)
            with conn, self.context.wrap_socket(conn, server_side=True) as tls:
                self.result.info = describe(tls)
                tls.sendall(b"ok")
        except (OSError, ssl.SSLError) as exc:
            self.result.error = exc
        finally:
            self.listener.close()

    def join(self) -> ServerResult:
        self.thread.join(30)
        return self.result


def handshake(port: int, context: ssl.SSLContext, server_hostname: str | None = None) -> TLSInfo:
    """Connect as a client, read the server's b"ok" and describe the session."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        assert tls.recv(2) == b"ok"
        return describe(tls)


def exchange(
    server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str | None = None
) -> tuple[TLSInfo, ServerResult]:
    """One full connection; raises the client's error, returns the server's result alongside."""
    one = OneShotServer(server)
    try:
        info = handshake(one.port, client, server_hostname)
    finally:
        result = one.join()
    return info, result
