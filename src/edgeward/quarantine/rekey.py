"""Changing the quarantine key: a new key id, every entry sealed again under it, in place.

The order keeps every entry readable at every moment, by this process and by a running
gateway (whose :class:`~edgeward.quarantine.crypto.Keyring` reads the key files again when
they change):

1. the current key is added to ``<key file>.previous`` (written to a temporary name, synced,
   renamed), then a new random key replaces the key file the same way. From here every
   reader opens both and every writer seals with the new one;
2. each entry file (``.eml`` first, then ``.json``) not yet under the new key is opened with
   the keyring, sealed under the new key into a temporary file, synced and renamed over the
   old one. Plaintext entries from before encryption was turned on are sealed too. Right
   before the rename the file is looked at again: if it was replaced or deleted meanwhile
   (a release, retention), the new version is left as the other writer made it and the
   temporary file is removed, so a deleted entry never comes back;
3. a second pass takes what the gateway wrote during the first with the old key;
4. the search index, whose rows are sealed too, is built again under the new key;
5. a previous key that no file is sealed under any more is dropped from ``.previous`` (the
   point of rotating a key is to stop depending on it). One still in use is kept, and said.

Entries sealed under a key the keyring does not hold are reported with their ids and left
untouched; so are files that fail authentication (damaged: the store sets them aside when
a listing meets them).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgeward.config.ownership import Owner, service_owner
from edgeward.quarantine.crypto import Damaged, KeyMismatch, Sealer, key_id_of, load_key, load_previous
from edgeward.quarantine.crypto import previous_path as _previous_path
from edgeward.quarantine.store import QuarantineStore
from edgeward.queue.files import sync_dir, unlink_quiet, write_new

__all__ = ["RekeyReport", "rekey"]

Progress = Callable[[int, int], None]


@dataclass(slots=True)
class RekeyReport:
    key_id: str  # the new key's id, hex
    resealed: int = 0  # files sealed again under the new key
    plaintext: int = 0  # of those, files that were not sealed before
    under_new_key: int = 0  # files under the new key at the end
    unknown_key: list[str] = field(default_factory=list)  # entry ids under a key we do not hold
    damaged: list[str] = field(default_factory=list)  # entry ids whose files fail authentication
    changed_meanwhile: int = 0  # files another writer replaced or removed during the pass
    retired: int = 0  # previous keys dropped (no file uses them)
    kept: int = 0  # previous keys kept (files still use them)


def _replace_file(path: Path, data: bytes, owner: Owner | None, *, sync: bool) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    write_new(tmp, data, sync=sync, owner=owner)
    os.replace(tmp, path)


def _install_new_key(key_file: Path, sync: bool) -> bytes:
    old = load_key(key_file)
    previous = [k for k in load_previous(key_file) if k != old]
    owner = service_owner(key_file.parent)
    # The old key is readable from .previous before the key file stops naming it.
    _replace_file(_previous_path(key_file), b"".join([*previous, old]), owner, sync=True)
    new = secrets.token_bytes(32)
    _replace_file(key_file, new, owner, sync=True)
    if sync:
        sync_dir(key_file.parent)
    return new


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _reseal(store: QuarantineStore, sealer: Sealer, path: Path, report: RekeyReport) -> bool:
    """Seal one file again; False when it cannot be (unknown key, damaged: reported)."""
    before = _stat(path)
    if before is None:
        report.changed_meanwhile += 1
        return True
    blob = path.read_bytes()
    kid = key_id_of(blob)
    if kid == sealer.key_id:
        report.under_new_key += 1
        return True
    qid = path.name.rsplit(".", 1)[0]
    try:
        plain = sealer.open(path.name, blob)
    except KeyMismatch:
        if qid not in report.unknown_key:
            report.unknown_key.append(qid)
        return False
    except Damaged:
        if qid not in report.damaged:
            report.damaged.append(qid)
        return False
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.rekey.tmp")
    write_new(tmp, sealer.seal(path.name, plain), sync=store.fsync, owner=store.owner)
    if _stat(path) != before:  # released, rewritten or deleted meanwhile: theirs stands
        unlink_quiet(tmp)
        report.changed_meanwhile += 1
        return True
    os.replace(tmp, path)
    report.resealed += 1
    report.plaintext += kid is None
    return True


def _pass(store: QuarantineStore, sealer: Sealer, report: RekeyReport, progress: Progress | None) -> None:
    metas = sorted(store.root.glob("*.json"))
    for n, meta in enumerate(metas, 1):
        # The message first: an entry whose metadata is under the new key has its message there too.
        message = meta.with_suffix(".eml")
        if _reseal(store, sealer, message, report):
            _reseal(store, sealer, meta, report)
        if progress is not None:
            progress(n, len(metas))
    if store.fsync:
        sync_dir(store.root)


def _retire(store: QuarantineStore, key_file: Path, new_id: bytes, report: RekeyReport) -> None:
    used: set[bytes] = set()
    for path in store.root.glob("*.*"):
        if path.suffix in (".eml", ".json") and not path.name.startswith("."):
            try:
                with path.open("rb") as f:
                    kid = key_id_of(f.read(12))
            except OSError:
                continue
            if kid is not None:
                used.add(kid)
    previous = load_previous(key_file)
    keep = [k for k in previous if Sealer(k).key_id in used and Sealer(k).key_id != new_id]
    report.retired, report.kept = len(previous) - len(keep), len(keep)
    path = _previous_path(key_file)
    if keep:
        _replace_file(path, b"".join(keep), service_owner(key_file.parent), sync=True)
    else:
        unlink_quiet(path)
    sync_dir(key_file.parent)


def rekey(store: QuarantineStore, key_file: Path, progress: Progress | None = None) -> RekeyReport:
    """Rotate the key of ``store`` (opened with the keyring of ``key_file``); see the module."""
    if store.keyring is None:
        raise ValueError("the quarantine is not encrypted ([quarantine] encryption_key_file)")
    new = _install_new_key(key_file, store.fsync)
    sealer = store.sealer  # reads both key files again: the new key and all previous ones
    report = RekeyReport(sealer.key_id.hex())
    _pass(store, sealer, report, progress)
    # What a gateway sealed with the old key while the first pass ran.
    late = RekeyReport(report.key_id)
    _pass(store, sealer, late, None)
    report.resealed += late.resealed
    report.plaintext += late.plaintext
    report.changed_meanwhile += late.changed_meanwhile
    report.unknown_key = late.unknown_key
    report.damaged = late.damaged
    report.under_new_key = late.under_new_key
    assert Sealer(new).key_id == sealer.key_id
    if store.index is not None:
        # Its rows are sealed under the old key, which is about to be retired.
        store.index.rebuild(store.list())
    _retire(store, key_file, sealer.key_id, report)
    return report
