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
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edgeward.config.ownership import make_private_dirs, service_owner
from edgeward.errors import ConfigError, EdgewardError
from edgeward.queue.files import write_new

__all__ = ["MAGIC", "Damaged", "KeyMismatch", "Sealer", "load_key"]

MAGIC = b"EWQ1"
_HEAD = len(MAGIC) + 8 + 12


class KeyMismatch(EdgewardError):
    """An entry is sealed under another key than the configured one, or no key is configured."""


class Damaged(ValueError):
    """A sealed file fails its authentication under the right key."""


class Sealer:
    """Seals and opens one entry's files under one key (or passes plaintext through without one)."""

    def __init__(self, key: bytes | None) -> None:
        self._aead = AESGCM(key) if key is not None else None
        self.key_id = _key_id(key) if key is not None else b""

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
        if not hmac.compare_digest(blob[4:12], self.key_id):
            raise KeyMismatch(
                f"quarantine entry {name} was encrypted with another key than"
                " [quarantine] encryption_key_file"
            )
        try:
            return self._aead.decrypt(blob[12:_HEAD], blob[_HEAD:], name.encode())
        except InvalidTag:
            raise Damaged("encrypted file fails authentication (damaged)") from None


def _key_id(key: bytes) -> bytes:
    return hmac.new(key, b"edgeward quarantine key id", hashlib.sha256).digest()[:8]


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
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = st.st_mode & 0o777
        raise ConfigError(f"quarantine.encryption_key_file: {path} must be 0600 (it is {mode:o})")
    if len(key) != 32:
        raise ConfigError(f"quarantine.encryption_key_file: {path} must hold 32 bytes (it holds {len(key)})")
    return key
