"""Encryption at rest for quarantine entries: AES-256-GCM with a key from a file.

A sealed file is ``EWQ1`` + an 8-byte key id + a 12-byte random nonce + the ciphertext with
its tag. The entry's file name (``<qid>.eml``, ``<qid>.json``) is the associated data, so a
sealed message cannot be passed off as another entry's. The key id (an HMAC of a fixed label
under the key) tells a wrong key from a damaged file: a wrong key is :class:`KeyMismatch`, a
clear error that leaves the entry where it is; a file that fails its tag under the right key
is damaged, and the store sets it aside like any unusable entry. Files without the magic are
the plaintext of entries written before encryption was turned on, and read as they are.

The key file holds 32 random bytes; :func:`load_key` creates it 0600 for the service user
when missing and refuses one that others may read.

Key rotation (``edgeward quarantine rekey``, :mod:`edgeward.quarantine.rekey`): the keys a key
file replaced are kept in ``<key file>.previous`` (32 bytes each, 0600) until no entry is
sealed under them. A :class:`Keyring` seals with the key file's key and opens with any of
them, and reads both files again whenever either changes (one ``stat`` each per use), so a
running gateway seals with the new key from its next entry on and keeps reading the old ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edgeward.config.ownership import make_private_dirs, service_owner
from edgeward.errors import ConfigError, EdgewardError
from edgeward.queue.files import write_new

__all__ = [
    "MAGIC", "Damaged", "KeyMismatch", "Keyring", "Sealer", "key_id_of", "load_key", "load_previous",
    "previous_path",
]  # fmt: skip

MAGIC = b"EWQ1"
_HEAD = len(MAGIC) + 8 + 12


class KeyMismatch(EdgewardError):
    """An entry is sealed under another key than the configured one, or no key is configured."""


class Damaged(ValueError):
    """A sealed file fails its authentication under the right key."""


class Sealer:
    """Seals and opens one entry's files under one key (or passes plaintext through without one)."""

    def __init__(self, key: bytes | None, older: tuple[bytes, ...] = ()) -> None:
        """``key`` seals and opens; the ``older`` keys only open (a rotation in progress)."""
        self._aead = AESGCM(key) if key is not None else None
        self.key_id = _key_id(key) if key is not None else b""
        self._openers = {_key_id(k): AESGCM(k) for k in older}
        if self._aead is not None:
            self._openers[self.key_id] = self._aead

    @property
    def enabled(self) -> bool:
        return self._aead is not None

    def seal(self, name: str, data: bytes) -> bytes:
        if self._aead is None:
            return data
        nonce = secrets.token_bytes(12)
        return MAGIC + self.key_id + nonce + self._aead.encrypt(nonce, data, name.encode())

    def open(self, name: str, blob: bytes) -> bytes:
        if not blob.startswith(MAGIC):
            return blob  # written before encryption was on
        if self._aead is None:
            raise KeyMismatch(
                f"quarantine entry {name} is encrypted and [quarantine] encryption_key_file is not set"
            )
        if len(blob) < _HEAD + 16:
            raise Damaged("encrypted file is truncated")
        aead = self._openers.get(blob[4:12])
        if aead is None:
            raise KeyMismatch(
                f"quarantine entry {name} was encrypted with another key than"
                " [quarantine] encryption_key_file (or its previous keys)"
            )
        try:
            return aead.decrypt(blob[12:_HEAD], blob[_HEAD:], name.encode())
        except InvalidTag:
            raise Damaged("encrypted file fails authentication (damaged)") from None

    def knows(self, key_id: bytes) -> bool:
        return key_id in self._openers


def _key_id(key: bytes) -> bytes:
    return hmac.new(key, b"edgeward quarantine key id", hashlib.sha256).digest()[:8]


def key_id_of(blob: bytes) -> bytes | None:
    """The key id a sealed file names; None for a plaintext (or too short) file."""
    return blob[4:12] if blob.startswith(MAGIC) and len(blob) >= 12 else None


def previous_path(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".previous")


def _check_private(path: Path, st: os.stat_result, setting: str) -> None:
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{setting}: {path} must be 0600 (it is {st.st_mode & 0o777:o})")


def load_previous(key_file: Path) -> tuple[bytes, ...]:
    """The keys ``key_file`` replaced (``<key_file>.previous``); none when that file is missing."""
    path = previous_path(key_file)
    try:
        st = path.stat()
        raw = path.read_bytes()
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise ConfigError(f"quarantine.encryption_key_file: cannot read {path}: {exc.strerror}") from None
    _check_private(path, st, "quarantine.encryption_key_file")
    if len(raw) % 32:
        raise ConfigError(
            f"quarantine.encryption_key_file: {path} must hold 32-byte keys (it holds {len(raw)} bytes)"
        )
    return tuple(raw[i : i + 32] for i in range(0, len(raw), 32))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class Keyring:
    """The key file and its previous keys as one :class:`Sealer`, read again when they change."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self._stamp: object = object()
        self._sealer = Sealer(None)
        self.sealer()  # a key file that cannot be read is an error now, not at the first message

    def sealer(self) -> Sealer:
        stamp = (_stamp(self.key_file), _stamp(previous_path(self.key_file)))
        if stamp != self._stamp:
            self._sealer = Sealer(load_key(self.key_file), load_previous(self.key_file))
            self._stamp = (_stamp(self.key_file), _stamp(previous_path(self.key_file)))
        return self._sealer


def load_key(path: Path) -> bytes:
    """The 32-byte key in ``path``, created there (0600, the service user's) when missing."""
    if not path.exists():
        make_private_dirs(path.parent, owner=service_owner(path.parent.parent))
        # Another process may make it first: then read theirs.
        with contextlib.suppress(FileExistsError):
            write_new(path, secrets.token_bytes(32), sync=True, owner=service_owner(path.parent))
    try:
        st = path.stat()
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"quarantine.encryption_key_file: cannot read {path}: {exc.strerror}") from None
    _check_private(path, st, "quarantine.encryption_key_file")
    if len(key) != 32:
        raise ConfigError(f"quarantine.encryption_key_file: {path} must hold 32 bytes (it holds {len(key)})")
    return key
