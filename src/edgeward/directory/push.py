"""Push over mutual TLS: an inside host sends the replica to the gateway (the Exchange way).

The inside host runs ``edgeward directory push --subscription FILE``: the pull sync
(``directory.sync``) into its own replica, mass-delete guard included, then the whole result
to the gateway's listener (``[directory] push_listen``). The gateway opens no connection into
the internal network and holds no directory credentials.

Wire: TLS 1.2+, then one request and one answer, each a 4-byte big-endian length and a JSON
object (at most ``MAX_FRAME``). Requests: ``{"op": "enrol", "secret", "csr"}`` (no client
certificate needed; see ``directory.subscription``) and ``{"op": "push", "state", "force"}``
(a client certificate of the subscription CA with an enrolled serial, else refused). The
listener asks for a client certificate and verifies it against the subscription CA only, so
a certificate from anywhere else fails the handshake. The client trusts exactly the gateway
certificate of the subscription file (pinned; its name is not what is checked).

The gateway applies a push like a sync: the mass-delete guard against its current replica
(``force`` from ``push --force``), then the atomic swap.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgeward.config.directory import DirectoryConfig
from edgeward.config.schema import Config
from edgeward.directory.lists import digests
from edgeward.directory.replica import Entry, Meta, ReplicaState, read_replica, write_replica
from edgeward.directory.subscription import (
    DEFAULT_NAME,
    HOST_NAME,
    Enrolment,
    Subscription,
    SubscriptionError,
    write_private,
)
from edgeward.directory.sync import SyncRefused, check_deletions
from edgeward.tls.store import CertificateStore

log = logging.getLogger("edgeward.directory.push")

MAX_FRAME = 512 * 1024 * 1024
# What a peer without a client certificate may send: an enrolment is a secret and a CSR.
MAX_ANONYMOUS_FRAME = 64 * 1024
TIMEOUT = 120.0


class PushError(Exception):
    """A push the gateway refused, or one that could not reach it."""


def _hashed(e: Entry) -> Entry:
    return replace(
        e, safe=digests(e.safe), blocked=digests(e.blocked), safe_recipients=digests(e.safe_recipients)
    )


def state_to_json(state: ReplicaState) -> dict[str, Any]:
    """The push body; the users' lists go as digests only (``directory.lists``)."""
    return {
        "entries": [asdict(_hashed(e)) for e in state.entries.values()],
        "domains": sorted(state.domains),
        "meta": asdict(state.meta),
    }


def _texts(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("a list of text was expected")
    return tuple(value)


def _entry(e: dict[str, Any]) -> Entry:
    fields = (e["id"], e["dn"], e["kind"], e.get("marker", ""))
    if not all(isinstance(f, str) for f in fields):
        raise TypeError("entry fields must be text")
    lists = (_texts(e.get(k, [])) for k in ("addresses", "members", "safe", "blocked", "safe_recipients"))
    addresses, members, safe, blocked, safe_recipients = lists
    # A host of an earlier version sends its lists in clear: they are hashed on arrival.
    return Entry(
        fields[0],
        fields[1],
        fields[2],
        addresses,
        fields[3],
        members,
        *map(digests, (safe, blocked, safe_recipients)),
    )


def state_from_json(data: dict[str, Any]) -> ReplicaState:
    """The state a push carries, checked field by field (it crosses a trust boundary)."""
    try:
        entries = [_entry(e) for e in data["entries"]]
        meta = Meta(**{k: data["meta"][k] for k in Meta.__dataclass_fields__ if k in data["meta"]})
        domains = frozenset(_texts(data["domains"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PushError(f"malformed push ({exc})") from None
    return ReplicaState({e.id: e for e in entries}, domains, meta).index()


async def _read_frame(reader: asyncio.StreamReader, limit: int = MAX_FRAME) -> dict[str, Any]:
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    if size > limit:
        # Read it away unkept (the request's time limit bounds this), so the refusal reaches
        # the peer instead of a reset for unread data.
        while size:
            size -= len(await reader.readexactly(min(size, 1 << 16)))
        raise PushError("the request is over the limit")
    data: dict[str, Any] = json.loads(await reader.readexactly(size))
    return data


def _frame(body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return struct.pack(">I", len(data)) + data


def server_context(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    # Optional so a host can enrol before it has a certificate; one that is shown must verify.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cafile=str(client_ca))
    return ctx


class PushListener:
    """The gateway's push endpoint; ``serve`` runs until cancelled."""

    def __init__(
        self,
        cfg: DirectoryConfig,
        replica: Path,
        enrolment: Enrolment,
        cert: Path,
        key: Path,
        owner: tuple[int, int] | None = None,
    ) -> None:
        self.cfg = cfg
        self.replica = replica
        self.enrolment = enrolment
        self.cert, self.key = cert, key
        self.owner = owner
        self.server: asyncio.Server | None = None

    async def start(self, sock: socket.socket | None = None) -> None:
        self.enrolment.ensure_ca()
        ctx = server_context(self.cert, self.key, self.enrolment.ca_path)
        if sock is not None:
            self.server = await asyncio.start_server(self._serve, sock=sock, ssl=ctx)
        else:
            host, _, port = self.cfg.push_listen.rpartition(":")
            self.server = await asyncio.start_server(self._serve, host.strip("[]"), int(port), ssl=ctx)

    async def serve(self) -> None:
        await self.start()
        assert self.server is not None
        async with self.server:
            await self.server.serve_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            tls = writer.get_extra_info("ssl_object")
            # Only an enrolled host may send a replica's worth; anyone else an enrolment.
            known = tls is not None and tls.getpeercert(binary_form=True)
            limit = MAX_FRAME if known else MAX_ANONYMOUS_FRAME
            request = await asyncio.wait_for(_read_frame(reader, limit), TIMEOUT)
            host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
            answer = await self._answer(request, tls, host)
        except (PushError, SubscriptionError, SyncRefused) as exc:
            log.warning("directory push from %s refused: %s", peer, exc)
            answer = {"ok": False, "error": str(exc)}
        except (OSError, EOFError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.warning("directory push from %s failed: %s", peer, exc)
            writer.close()
            return
        try:
            writer.write(_frame(answer))
            await writer.drain()
        except OSError:
            pass
        writer.close()

    async def _answer(self, request: dict[str, Any], tls: ssl.SSLObject | None, peer: str) -> dict[str, Any]:
        op = request.get("op")
        if op == "enrol":
            cert = await asyncio.to_thread(
                self.enrolment.enrol, str(request.get("secret", "")), str(request.get("csr", "")), peer
            )
            log.info("directory push: a host enrolled")
            return {"ok": True, "certificate": cert}
        if op != "push":
            raise PushError(f"unknown request {op!r}")
        der = tls.getpeercert(binary_form=True) if tls is not None else None
        if not der:
            raise PushError("a push needs the client certificate of an enrolled host")
        serial = x509.load_der_x509_certificate(der).serial_number
        if not await asyncio.to_thread(self.enrolment.enrolled, serial):
            raise PushError(f"this client certificate ({serial:X}) is not enrolled or was revoked")
        state = state_from_json(request.get("state") or {})
        counts = await asyncio.to_thread(self._apply, state, bool(request.get("force")))
        try:
            await asyncio.to_thread(self.enrolment.record_push, serial, peer)
        except (OSError, ValueError, SubscriptionError) as exc:
            # The push is applied; only the listing's "last push" misses it.
            log.error("directory push: cannot record the push of %X: %s", serial, exc)
        return {"ok": True, **counts}

    def _apply(self, state: ReplicaState, force: bool) -> dict[str, int]:
        try:
            previous = read_replica(self.replica)
        except FileNotFoundError:
            previous = ReplicaState()
        check_deletions(previous, state.entries, self.cfg, force)
        write_replica(self.replica, state, owner=self.owner)
        log.info("directory push applied: %d objects", len(state.entries))
        return {
            "entries": len(state.entries),
            "removed": sum(1 for i in previous.entries if i not in state.entries),
        }


def gateway_certificate(config: Config) -> tuple[Path, Path]:
    """The certificate the push listener presents: the gateway's ``smtp`` default, as Exchange's
    Edge subscription carries the Edge's SMTP certificate."""
    store = CertificateStore(config.resolve(config.tls.store))
    return store.ensure_default(config.server.hostname)


def enrolment_for(config: Config, owner: tuple[int, int] | None = None) -> Enrolment:
    return Enrolment(config.resolve(Path("state")) / "edgesync", owner)


def build_listener(config: Config, replica: Path) -> PushListener:
    cert, key = gateway_certificate(config)
    return PushListener(config.directory, replica, enrolment_for(config), cert, key)


# --- the inside host ------------------------------------------------------------------------------


def _client_context(sub: Subscription, identity: tuple[Path, Path] | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # The pinned certificate is the trust anchor, whatever name the gateway is reached by.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.load_verify_locations(cadata=sub.certificate)
    if identity is not None:
        ctx.load_cert_chain(*identity)
    return ctx


def _exchange(
    sub: Subscription, request: dict[str, Any], identity: tuple[Path, Path] | None
) -> dict[str, Any]:
    host, _, port = sub.gateway.rpartition(":")
    pinned = x509.load_pem_x509_certificate(sub.certificate.encode()).fingerprint(hashes.SHA256())
    try:
        with (
            socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT) as raw,
            _client_context(sub, identity).wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True) or b""
            if hashlib.sha256(der).digest() != pinned:
                raise PushError("the gateway's certificate is not the one of the subscription")
            tls.sendall(_frame(request))
            (size,) = struct.unpack(">I", _recv(tls, 4))
            answer: dict[str, Any] = json.loads(_recv(tls, size))
    except (OSError, ValueError, struct.error) as exc:
        raise PushError(f"{sub.gateway}: {exc}") from exc
    if not answer.get("ok"):
        raise PushError(f"the gateway refused: {answer.get('error', 'no reason given')}")
    return answer


def _recv(sock: ssl.SSLSocket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise PushError("the gateway closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _own_name() -> str:
    name = socket.gethostname()
    return name if HOST_NAME.match(name) else DEFAULT_NAME


def enrol(sub: Subscription, folder: Path) -> tuple[Path, Path]:
    """Make a key here, have the gateway sign it with the one-time secret; return (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        # The host's name, shown by 'directory subscriptions' on the gateway.
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _own_name())]))
        .sign(key, hashes.SHA256())
    )
    answer = _exchange(
        sub,
        {"op": "enrol", "secret": sub.secret, "csr": csr.public_bytes(serialization.Encoding.PEM).decode()},
        None,
    )
    key_path, cert_path = folder / "client.key", folder / "client.pem"
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    write_private(cert_path, str(answer["certificate"]).encode())
    return cert_path, key_path


def push(
    sub: Subscription,
    state: ReplicaState,
    identity: tuple[Path, Path],
    *,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    if progress is not None:
        progress(f"sending {len(state.entries)} objects to {sub.gateway}")
    return _exchange(sub, {"op": "push", "state": state_to_json(state), "force": force}, identity)
