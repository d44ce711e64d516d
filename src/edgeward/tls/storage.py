"""The on-disk side of the certificate store: layout, index, lock and transactions.

Owns where files live under the store root and how a change becomes durable. ``store`` builds
the certificate lifecycle on top; nothing else should touch these files.

Layout (all created here)::

    <root>/            0700   index.json (0600, see ``index``), .lock
      certs/<T>.pem    0644   leaf first, then intermediates: what the listener sends
      keys/<T>.key     0600   PKCS#8 key of certificate <T> (T = SHA-256 thumbprint)
      keys/request-<id>.key   key of a pending request, moved to <T>.key when the CA answers
      requests/<id>.csr       the request to hand to the CA

Every change runs in ``transaction``: an exclusive lock, new files written before the index
that names them, old files deleted only after the index stops naming them. A crash at any
point leaves an index that refers only to files that exist (at worst a few orphans).

Security: folders are 0700 and keys 0600 from their creation (``fsutil``); paths read from
the index are confined to the store; the index never holds key material.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from cryptography import x509

from edgeward.ports import Clock, SystemClock
from edgeward.tls import certs as x
from edgeward.tls.errors import StoreCorrupt, UnknownCertificate
from edgeward.tls.fsutil import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    atomic_write,
    ensure_private_dir,
    exclusive_lock,
    remove_file,
)
from edgeward.tls.index import CertRecord, StoreIndex

MIN_THUMBPRINT_PREFIX = 8


@dataclass(slots=True)
class Txn:
    index: StoreIndex
    doomed: list[Path] = field(default_factory=list)  # deleted after the index is saved


class StoreFiles:
    """Files and index of a store rooted at ``root``; the base of ``CertificateStore``."""

    def __init__(self, root: Path, *, clock: Clock | None = None) -> None:
        # Absolute, so paths handed to listeners stay valid if the working folder changes.
        self.root = Path(root).absolute()
        self._clock = clock or SystemClock()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Txn]:
        for folder in (self.root, self.root / "certs", self.root / "keys", self.root / "requests"):
            ensure_private_dir(folder)
        with exclusive_lock(self.root / ".lock"):
            txn = Txn(self._read_index())
            yield txn
            atomic_write(self.root / "index.json", txn.index.to_json(), mode=PRIVATE_FILE_MODE)
            for path in txn.doomed:
                remove_file(path)

    def _snapshot(self) -> StoreIndex:
        if not (self.root / "index.json").exists():
            return StoreIndex()
        # The lock keeps a concurrent removal from deleting files between reading the index and
        # reading the certificates it names.
        with exclusive_lock(self.root / ".lock"):
            return self._read_index()

    def _read_index(self) -> StoreIndex:
        path = self.root / "index.json"
        if not path.exists():
            return StoreIndex()
        return StoreIndex.from_json(path.read_bytes())

    def _path(self, relative: str) -> Path:
        rel = PurePosixPath(relative)
        # The index is ours, but a path leaving the store must never be followed.
        if rel.is_absolute() or ".." in rel.parts:
            raise StoreCorrupt(f"index.json names a path outside the store: {relative!r}")
        return self.root / rel

    def _files(self, index: StoreIndex, thumb: str) -> tuple[Path, Path]:
        record = index.certificates[thumb]
        cert_path, key_path = self._path(record.cert), self._path(record.key)
        for path in (cert_path, key_path):
            if not path.is_file():
                raise StoreCorrupt(f"{path} of certificate {thumb} is missing")
        return cert_path, key_path

    def _load_cert(self, record: CertRecord) -> x509.Certificate:
        return x509.load_pem_x509_certificate(read_store_file(self._path(record.cert)))

    def _find(self, thumbprint: str, index: StoreIndex | None = None) -> tuple[str, x509.Certificate]:
        index = index if index is not None else self._snapshot()
        wanted = thumbprint.strip().replace(":", "").replace(" ", "").upper()
        if len(wanted) < MIN_THUMBPRINT_PREFIX:
            raise UnknownCertificate(f"give at least {MIN_THUMBPRINT_PREFIX} hex digits of the thumbprint")
        matches = [t for t in index.certificates if t.startswith(wanted)]
        if not matches:
            raise UnknownCertificate(f"no certificate with thumbprint {thumbprint}")
        if len(matches) > 1:
            raise UnknownCertificate(f"thumbprint {thumbprint} is ambiguous: give more digits")
        return matches[0], self._load_cert(index.certificates[matches[0]])

    def _add(self, txn: Txn, chain: builtins.list[x509.Certificate], key_pem: bytes) -> str:
        thumb = x.thumbprint(chain[0])
        cert_rel, key_rel = f"certs/{thumb}.pem", f"keys/{thumb}.key"
        # Key before certificate, and both before the index names them.
        atomic_write(self._path(key_rel), key_pem, mode=PRIVATE_FILE_MODE)
        atomic_write(self._path(cert_rel), x.chain_to_pem(chain), mode=PUBLIC_FILE_MODE)
        if thumb not in txn.index.certificates:
            txn.index.certificates[thumb] = CertRecord(cert_rel, key_rel, added=self.now().isoformat())
        return thumb

    def _drop(self, txn: Txn, thumb: str) -> None:
        record = txn.index.certificates.pop(thumb)
        txn.index.unbind_all(thumb)
        txn.doomed += [self._path(record.cert), self._path(record.key)]


def read_store_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StoreCorrupt(f"cannot read {path}: {exc.strerror}") from exc
