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

``state/edgesync/clients.json`` holds, per serial, what ``directory subscriptions`` lists: the
certificate's subject (the name the inside host gave in its CSR, if it is a host name), when
and from where it enrolled, its last accepted push, and when it was revoked. ``directory
revoke SERIAL`` marks it revoked (kept, so the listing says so): the listener reads the file at
every push, so the next push with that certificate is refused, with no restart. The CLI (as
root) and the listener both change these files; they do so under an exclusive lock
(``.lock``), so a push being recorded cannot write back a revocation made meanwhile.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
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
DEFAULT_NAME = "edgesync-push"
# A name an inside host may give itself in its CSR: informative only (the secret authorises).
HOST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,62})$")


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


@dataclass(frozen=True, slots=True)
class Client:
    """An inside host enrolled to push; times are Unix seconds, 0 for never."""

    serial: int
    subject: str
    enrolled: float
    peer: str = ""
    last_push: float = 0.0
    last_peer: str = ""
    revoked: float = 0.0

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "X")

    def as_json(self) -> dict[str, Any]:
        return {
            "serial": self.serial_hex,
            "subject": self.subject,
            "enrolled": self.enrolled,
            "peer": self.peer,
            "last_push": self.last_push,
            "last_peer": self.last_peer,
            "revoked": self.revoked,
        }

    @classmethod
    def from_json(cls, serial: str, value: object) -> Client:
        if not isinstance(value, dict):
            # The earlier format kept only the enrolment time.
            return cls(
                int(serial), f"CN={DEFAULT_NAME}", float(value) if isinstance(value, int | float) else 0.0
            )
        return cls(
            int(serial),
            str(value.get("subject", f"CN={DEFAULT_NAME}")),
            float(value.get("enrolled", 0.0)),
            str(value.get("peer", "")),
            float(value.get("last_push", 0.0)),
            str(value.get("last_peer", "")),
            float(value.get("revoked", 0.0)),
        )


def _stored(client: Client) -> dict[str, Any]:
    # Keyed by the decimal serial in clients.json, as the earlier format was.
    return {k: v for k, v in client.as_json().items() if k != "serial"}


def parse_serial(text: str) -> int:
    """A serial as ``directory subscriptions`` shows it: hex, colons and a 0x prefix allowed."""
    cleaned = text.strip().replace(":", "").lower().removeprefix("0x")
    if not cleaned or any(c not in "0123456789abcdef" for c in cleaned):
        raise SubscriptionError(f"{text!r}: give the serial in hex, as 'directory subscriptions' shows it")
    return int(cleaned, 16)


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

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Held while reading and writing pending.json or clients.json (see the module doc)."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if self.owner is not None:
                os.fchown(fd, *self.owner)
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

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
        with self._locked():
            pending = (
                {} if reset else {d: e for d, e in self._json("pending.json").items() if e > time.time()}
            )
            pending[_digest(secret)] = expires
            self._save("pending.json", pending)
            if reset:
                self._save("clients.json", {})
        return secret, expires

    def enrol(self, secret: str, csr_pem: str, peer: str = "") -> str:
        """Check and spend ``secret``; sign ``csr_pem``; return the client certificate (PEM)."""
        with self._locked():
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
        given = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        host = str(given[0].value) if given else ""
        name = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, host if HOST_NAME.match(host) else DEFAULT_NAME)]
        )
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
        client = Client(cert.serial_number, name.rfc4514_string(), time.time(), peer)
        with self._locked():
            clients = self._json("clients.json")
            clients[str(client.serial)] = _stored(client)
            self._save("clients.json", clients)
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def clients(self) -> list[Client]:
        """Every enrolled host, revoked ones included, by enrolment time."""
        found = [Client.from_json(k, v) for k, v in self._json("clients.json").items()]
        return sorted(found, key=lambda c: c.enrolled)

    def enrolled(self, serial: int) -> bool:
        """Whether ``serial`` is enrolled and not revoked (read afresh: a revocation counts at once)."""
        value = self._json("clients.json").get(str(serial))
        return value is not None and not Client.from_json(str(serial), value).revoked

    def _change(self, serial: int, **changes: float | str) -> tuple[Client, Client]:
        """Apply ``changes`` to the record of ``serial`` under the lock; (before, after)."""
        with self._locked():
            clients = self._json("clients.json")
            if str(serial) not in clients:
                raise SubscriptionError(f"no enrolled host has the serial {serial:X}")
            before = Client.from_json(str(serial), clients[str(serial)])
            after = before if before.revoked and "revoked" in changes else replace(before, **changes)  # type: ignore[arg-type]
            clients[str(serial)] = _stored(after)
            self._save("clients.json", clients)
            return before, after

    def record_push(self, serial: int, peer: str = "") -> None:
        self._change(serial, last_push=time.time(), last_peer=peer)

    def revoke(self, serial: int) -> tuple[Client, bool]:
        """Mark ``serial`` revoked; returns it and whether it was revoked already."""
        before, after = self._change(serial, revoked=time.time())
        return after, bool(before.revoked)
