"""Edge subscriptions: how an inside host earns the right to push the directory to the gateway.

As with Exchange's Edge subscription file, ``edgeward directory subscribe`` on the gateway
writes a file to carry to the inside host: the gateway's certificate (the one its push
listener presents: the ``smtp`` default of the certificate store) and a one-time secret,
valid ``lifetime`` (24 hours, as Exchange's). Only the secret's SHA-256 is kept on the gateway
(``state/edgesync/pending.json``).

The inside host's first push *enrols*: it makes its own key and sends a CSR with the secret;
the gateway checks the secret (unused, unexpired; then it is gone), signs the CSR with its
subscription CA (``state/edgesync/ca.pem``, made at the first subscription, key 0600) and
records the serial. From then on a push needs a client certificate from that CA with an
enrolled serial: the private key never left the inside host, and no other certificate is
accepted. ``subscribe`` again (a new secret) lets a new host enrol; ``--reset`` forgets every
enrolled host.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SUBSCRIPTION_VERSION = 1
# keyCertSign and cRLSign only.
_CA_USAGE = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
CLIENT_DAYS = 730


class SubscriptionError(Exception):
    """A subscription or enrolment that cannot be honoured (bad secret, bad file, bad request)."""


def write_private(path: Path, data: bytes, owner: tuple[int, int] | None = None) -> None:
    """Write ``data`` 0600 (owned by ``owner``) and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
        if owner is not None:
            os.fchown(fd, *owner)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class Subscription:
    """What the inside host holds: where to push, the gateway's certificate, the secret."""

    gateway: str  # host:port of the push listener
    certificate: str  # PEM
    secret: str
    expires: float

    def write(self, path: Path) -> None:
        body = {
            "version": SUBSCRIPTION_VERSION,
            "gateway": self.gateway,
            "certificate": self.certificate,
            "secret": self.secret,
            "expires": self.expires,
        }
        write_private(path, json.dumps(body, indent=2).encode())

    @classmethod
    def read(cls, path: Path) -> Subscription:
        try:
            body = json.loads(path.read_text("utf-8"))
            if body.get("version") != SUBSCRIPTION_VERSION:
                raise SubscriptionError(f"{path}: not a subscription file of this version")
            x509.load_pem_x509_certificate(body["certificate"].encode())
            return cls(str(body["gateway"]), body["certificate"], str(body["secret"]), float(body["expires"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SubscriptionError(f"{path}: not a readable subscription file ({exc})") from None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Enrolment:
    """The gateway's side: the subscription CA, pending secrets, enrolled client serials."""

    def __init__(self, folder: Path, owner: tuple[int, int] | None = None) -> None:
        self.folder = folder
        self.owner = owner

    @property
    def ca_path(self) -> Path:
        return self.folder / "ca.pem"

    def _json(self, name: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.folder / name).read_text("utf-8"))
            return data
        except FileNotFoundError:
            return {}

    def _save(self, name: str, data: dict[str, Any]) -> None:
        write_private(self.folder / name, json.dumps(data, indent=2).encode(), self.owner)

    def ensure_ca(self) -> None:
        if self.ca_path.exists():
            return
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Edgeward EdgeSync subscription CA")])
        now = datetime.now(UTC) - timedelta(minutes=5)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_USAGE, critical=True)
            .sign(key, hashes.SHA256())
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_private(self.folder / "ca.key", pem, self.owner)
        write_private(self.ca_path, cert.public_bytes(serialization.Encoding.PEM), self.owner)

    def new_secret(self, lifetime: float, *, reset: bool = False) -> tuple[str, float]:
        self.ensure_ca()
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        expires = time.time() + lifetime
        pending = {} if reset else {d: e for d, e in self._json("pending.json").items() if e > time.time()}
        pending[_digest(secret)] = expires
        self._save("pending.json", pending)
        if reset:
            self._save("clients.json", {})
        return secret, expires

    def enrol(self, secret: str, csr_pem: str) -> str:
        """Check and spend ``secret``; sign ``csr_pem``; return the client certificate (PEM)."""
        pending = self._json("pending.json")
        digest = _digest(secret)
        match = next((d for d in pending if hmac.compare_digest(d, digest)), None)
        if match is None or pending[match] <= time.time():
            raise SubscriptionError("unknown, used or expired subscription secret")
        del pending[match]
        self._save("pending.json", pending)
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except ValueError as exc:
            raise SubscriptionError(f"not a certificate request ({exc})") from None
        if not csr.is_signature_valid:
            raise SubscriptionError("the certificate request's signature is not valid")
        key_pem = (self.folder / "ca.key").read_bytes()
        ca_key = serialization.load_pem_private_key(key_pem, None)
        ca = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
        now = datetime.now(UTC) - timedelta(minutes=5)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgesync-push")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(ca.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=CLIENT_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        clients = self._json("clients.json")
        clients[str(cert.serial_number)] = time.time()
        self._save("clients.json", clients)
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def enrolled(self, serial: int) -> bool:
        return str(serial) in self._json("clients.json")
