"""A file-backed quarantine store.

Layout: ``<root>/<qid>.eml`` (the message as it would have been delivered) and ``<root>/<qid>.json``
(the entry of ``quarantine.entry``). Both are written 0600 through tmp + fsync + rename, the
metadata last, so a listed entry always has its message; ``entry`` reads the metadata alone,
and ``rewrite`` replaces it (a release to some of the recipients). The manager
(``quarantine.service``) builds search, release and purge on these. With ``indexed`` every
change is also written to the search index (``quarantine.index``) after the files.

An entry that cannot be used (metadata that does not parse, or a file the gateway may not read)
is moved with its message to ``<root>/corrupt/`` when a listing meets it, logged and reported
through ``on_corrupt``; it is never deleted and never hides the entries after it. Retention
(:meth:`QuarantineStore.expire`) deletes entries older than a cut-off and returns them, so the
caller can log and track each one (``quarantine.retention`` runs it in the gateway).

Run as root (an administrator's command), files and folders the store creates are given to the
owner of the quarantine folder (``config.ownership``).

With a key (``[quarantine] encryption_key_file``) both files are sealed with AES-GCM
(``quarantine.crypto``) and opened transparently; an entry sealed under another key is a
:class:`~edgeward.quarantine.crypto.KeyMismatch` error when asked for by id, is left out of
listings (logged) and left in place, never set aside and never returned as garbage.

Security: quarantined content is never interpreted here; ids are checked before they become
file names, so no id can reach outside the folder.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import secrets
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

from edgeward.config.ownership import Owner, make_private_dirs, service_owner
from edgeward.errors import EdgewardError
from edgeward.headers import parse_headers, sanitize
from edgeward.quarantine.crypto import Damaged, KeyMismatch, Keyring, Sealer
from edgeward.quarantine.entry import QID as _QID
from edgeward.quarantine.entry import QuarantineEntry, entry_from_dict
from edgeward.quarantine.index import IndexDamaged, QuarantineIndex
from edgeward.queue.files import sync_dir, unlink_quiet, write_new
from edgeward.queue.model import MessageRecord, QueueState, RecipientRecord, decode_record

__all__ = [
    "CORRUPT_DIR", "KeyMismatch", "QuarantineEntry", "QuarantineError", "QuarantineStore", "release_record",
]  # fmt: skip

log = logging.getLogger(__name__)

CORRUPT_DIR = "corrupt"


class QuarantineError(EdgewardError):
    """A quarantine entry exists but cannot be used (it has been moved to ``corrupt/``)."""


class QuarantineStore:
    """Quarantined messages in one folder."""

    def __init__(
        self,
        root: Path,
        *,
        fsync: bool = True,
        on_corrupt: Callable[[str, str], None] | None = None,
        key: bytes | None = None,
        keyring: Keyring | None = None,
        indexed: bool = False,
    ) -> None:
        """``on_corrupt`` is called with the name and the reason of each entry moved aside;
        ``key`` (32 bytes) seals what is written and opens what was sealed; a ``keyring``
        instead follows the key file through a rotation (``quarantine.crypto``); ``indexed``
        keeps the search index (``quarantine.index``) on every change."""
        self.root = root
        self._fixed = Sealer(key)
        self.keyring = keyring
        self._sync = fsync
        self.on_corrupt = on_corrupt
        self._owner = service_owner(root)
        make_private_dirs(root, owner=self._owner)
        self.index = QuarantineIndex(root, lambda: self.sealer) if indexed else None

    @property
    def fsync(self) -> bool:
        return self._sync

    @property
    def owner(self) -> Owner | None:
        """Who files written here belong to (the service user, when run as root)."""
        return self._owner

    @property
    def sealer(self) -> Sealer:
        """The sealer now: the keyring's current keys, or the fixed key."""
        return self.keyring.sealer() if self.keyring is not None else self._fixed

    def _path(self, qid: str, suffix: str) -> Path:
        if not _QID.match(qid):
            raise KeyError(qid)
        return self.root / f"{qid}{suffix}"

    def put(self, entry: QuarantineEntry, data: bytes) -> str:
        """Store ``data`` under a new id (the entry's ``qid`` is replaced); return the id."""
        qid = f"{int(time.time() * 1000):x}{secrets.token_hex(5)}"
        meta = json.dumps({**asdict(entry), "qid": qid, "size": len(data)}).encode()
        tmp_data, tmp_meta = self.root / f".{qid}.eml.tmp", self.root / f".{qid}.json.tmp"
        seal = self.sealer.seal
        write_new(tmp_data, seal(f"{qid}.eml", data), sync=self._sync, owner=self._owner)
        write_new(tmp_meta, seal(f"{qid}.json", meta), sync=self._sync, owner=self._owner)
        os.rename(tmp_data, self._path(qid, ".eml"))
        os.rename(tmp_meta, self._path(qid, ".json"))
        if self._sync:
            sync_dir(self.root)
        self._indexed(lambda index: index.upsert([replace(entry, qid=qid, size=len(data))]))
        return qid

    def _indexed(self, change: Callable[[QuarantineIndex], None]) -> None:
        index = self.index
        if index is not None:
            index.kept(lambda: change(index))

    def get(self, qid: str) -> tuple[QuarantineEntry, bytes]:
        """The entry and its message; ``KeyError`` if there is none, ``QuarantineError`` if it
        cannot be used (it is then moved aside)."""
        meta_path = self._path(qid, ".json")
        try:
            entry = self._read(meta_path)
            data = self._message(qid)
        except FileNotFoundError:
            if meta_path.exists():
                self.set_aside(qid, "the message file is missing")
                raise QuarantineError(f"quarantined message {qid} has no message file; set aside") from None
            raise KeyError(qid) from None
        except _Unusable as exc:
            self.set_aside(qid, str(exc))
            raise QuarantineError(f"quarantined message {qid} cannot be used ({exc}); set aside") from None
        except (PermissionError, IsADirectoryError) as exc:
            self.set_aside(qid, f"the message file cannot be read: {exc.strerror}")
            raise QuarantineError(f"quarantined message {qid} cannot be read; moved to corrupt/") from None
        return entry, data

    def entry(self, qid: str) -> QuarantineEntry:
        """The metadata alone (the message is not read); errors as :meth:`get`."""
        meta_path = self._path(qid, ".json")
        try:
            return self._read(meta_path)
        except FileNotFoundError:
            raise KeyError(qid) from None
        except _Unusable as exc:
            self.set_aside(qid, str(exc))
            raise QuarantineError(f"quarantined message {qid} cannot be used ({exc}); set aside") from None

    def _message(self, qid: str) -> bytes:
        name = f"{qid}.eml"
        try:
            return self.sealer.open(name, (self.root / name).read_bytes())
        except Damaged as exc:
            raise _Unusable(f"message: {exc}") from None

    def _read(self, path: Path, sealer: Sealer | None = None) -> QuarantineEntry:
        if not stat.S_ISREG(path.lstat().st_mode):
            raise _Unusable("not a regular file")  # a FIFO would block the read, a link lead elsewhere
        try:
            raw = (sealer or self.sealer).open(path.name, path.read_bytes())
        except (PermissionError, IsADirectoryError) as exc:
            raise _Unusable(f"unreadable: {exc.strerror}") from None
        except Damaged as exc:
            raise _Unusable(str(exc)) from None
        try:
            return entry_from_dict(json.loads(raw))
        except (ValueError, TypeError, AttributeError) as exc:
            raise _Unusable(f"corrupt: {exc}") from None

    def listable(self, qid: str) -> QuarantineEntry | None:
        """The entry as a listing sees it: None when a listing would leave it out (gone, under
        an unknown key, or unusable: that one is set aside as a listing does)."""
        try:
            return self._read(self._path(qid, ".json"))
        except (FileNotFoundError, KeyError):
            return None
        except KeyMismatch as exc:
            log.error("quarantine entry %s left out: %s", qid, exc)
        except _Unusable as exc:
            self.set_aside(qid, str(exc))
        except OSError as exc:
            log.warning("cannot read quarantine entry %s now: %s", qid, exc)
        return None

    def list(self) -> list[QuarantineEntry]:
        return sorted(self._entries(), key=lambda e: e.quarantined_at)

    def _entries(self) -> Iterator[QuarantineEntry]:
        sealer = self.sealer  # the keys once per listing, not once per entry
        for path in self.root.glob("*.json"):
            try:
                yield self._read(path, sealer)
            except FileNotFoundError:
                continue  # released or deleted while we looked
            except KeyMismatch as exc:
                # One entry under an old key must not hide the others or stop retention; it stays
                # where it is for whoever holds that key.
                log.error("quarantine entry %s left out: %s", path.name[: -len(".json")], exc)
            except _Unusable as exc:
                self.set_aside(path.name[: -len(".json")], str(exc))
            except OSError as exc:  # not the entry's fault (EMFILE, EIO): look again next time
                log.warning("cannot read quarantine entry %s now: %s", path.name, exc)

    def set_aside(self, name: str, reason: str) -> None:
        """Move entry ``name`` (metadata and message) to ``corrupt/``; log and report it."""
        corrupt = self.root / CORRUPT_DIR
        make_private_dirs(corrupt, owner=self._owner)
        moved = False
        for suffix in (".json", ".eml"):
            src = self.root / f"{name}{suffix}"
            dst = corrupt / f"{name}{suffix}"
            if dst.exists():
                dst = corrupt / f"{name}.{secrets.token_hex(4)}{suffix}"
            try:
                os.rename(src, dst)
            except FileNotFoundError:
                continue
            moved = True
        if not moved:
            return
        self._indexed(lambda index: index.remove([name]))
        if self._sync:
            sync_dir(corrupt)
        log.error("quarantine entry %s moved to %s/: %s", name, CORRUPT_DIR, reason)
        if self.on_corrupt is not None:
            try:
                self.on_corrupt(name, reason)
            except Exception:
                log.exception("reporting corrupt quarantine entry %s failed", name)

    def rewrite(self, entry: QuarantineEntry) -> None:
        """Replace the metadata of an existing entry (a release to some recipients keeps the
        others' entry); ``KeyError`` if it is gone."""
        qid = entry.qid
        path = self._path(qid, ".json")
        if not path.exists():
            raise KeyError(qid)
        tmp = self.root / f".{qid}.json.{secrets.token_hex(4)}.tmp"
        meta = json.dumps(asdict(entry)).encode()
        write_new(tmp, self.sealer.seal(f"{qid}.json", meta), sync=self._sync, owner=self._owner)
        os.rename(tmp, path)
        if self._sync:
            sync_dir(self.root)
        self._indexed(lambda index: index.upsert([entry]))

    def delete(self, qid: str) -> None:
        meta, data = self._path(qid, ".json"), self._path(qid, ".eml")
        if not unlink_quiet(meta):
            raise KeyError(qid)
        unlink_quiet(data)
        if self._sync:
            sync_dir(self.root)
        self._indexed(lambda index: index.remove([qid]))

    def _older_than(self, cutoff: float) -> builtins.list[QuarantineEntry]:
        """Retention's candidates: from the index once reconciled (every listable entry has its
        row, and a row's date is its entry's, which never changes), else every file."""
        index = self.index
        if index is not None:
            try:
                index.reconcile(self.listable)
                found = (self.listable(qid) for qid in index.older_than(cutoff))
                return sorted((e for e in found if e is not None), key=lambda e: e.quarantined_at)
            except (IndexDamaged, sqlite3.Error, OSError) as exc:
                log.warning("quarantine retention reads every entry: the index failed (%s)", exc)
        return self.list()

    def expire(self, older_than: float) -> builtins.list[QuarantineEntry]:
        """Delete entries quarantined before ``older_than`` (epoch seconds); return them. Each
        entry's date is read from its file before it is deleted."""
        gone: list[QuarantineEntry] = []
        for entry in self._older_than(older_than):
            if entry.quarantined_at < older_than:
                try:
                    self.delete(entry.qid)
                except KeyError:
                    continue  # released or deleted meanwhile
                gone.append(entry)
        return gone


def release_record(entry: QuarantineEntry, data: bytes, *, msg_id: str, now: float) -> MessageRecord:
    """The queue record of a released message: everything it arrived with, a new id and time.

    ``received_at`` is the release, not the arrival: the queue's expiry must not count the
    days the message spent in quarantine. An entry stored before the queue record was kept
    gets what the entry has, and its Message-ID from the message's own header.
    """
    record: MessageRecord | None = None
    if entry.queue_record is not None:
        try:
            raw = json.dumps({**entry.queue_record, "id": msg_id}).encode()
            record = decode_record(raw, QueueState.INCOMING)
        except (TypeError, ValueError):
            record = None
    if record is None:
        message_id = sanitize(parse_headers(data).get("Message-ID").strip(), 500)
        record = MessageRecord(
            id=msg_id, mail_from=entry.mail_from,
            recipients=tuple(RecipientRecord(address=r) for r in entry.recipients),
            received_at=now, size=len(data), client_ip=entry.client_ip, message_id=message_id,
            connector="quarantine",
        )  # fmt: skip
    fresh = tuple(RecipientRecord(r.address, notify=r.notify, orcpt=r.orcpt) for r in record.recipients)
    return replace(
        record, recipients=fresh, received_at=now, size=len(data), attempts=0, first_attempt_at=None,
        next_attempt_at=0.0, delay_notified=False, crash_count=0, hold_reason="",
    )  # fmt: skip


class _Unusable(ValueError):
    """The metadata file was read but is no quarantine entry."""
