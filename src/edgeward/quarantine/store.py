"""A file-backed quarantine store.

Layout: ``<root>/<qid>.eml`` (the message as it would have been delivered) and ``<root>/<qid>.json``
(envelope, reason, findings, SCL, time). Both are written 0600 through tmp + fsync + rename,
the metadata last, so a listed entry always has its message. The quarantine manager of the
web UI builds on ``list``/``get``/``release``/``delete``; releasing gives the message back to
the caller, which re-queues it (and may teach the classifier it was not spam).

Security: quarantined content is never interpreted here; ids are checked before they become
file names, so no id can reach outside the folder.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeward.queue.files import sync_dir, unlink_quiet, write_new

_QID = re.compile(r"^[0-9a-z]{8,40}$")


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    qid: str
    mail_from: str
    recipients: tuple[str, ...]
    reason: str  # which agent quarantined it, e.g. "content-filter"
    scl: int = -1
    findings: tuple[str, ...] = ()
    subject: str = ""
    client_ip: str = ""
    size: int = 0
    quarantined_at: float = field(default_factory=time.time)


class QuarantineStore:
    """Quarantined messages in one folder."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self._sync = fsync
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, qid: str, suffix: str) -> Path:
        if not _QID.match(qid):
            raise KeyError(qid)
        return self.root / f"{qid}{suffix}"

    def put(self, entry: QuarantineEntry, data: bytes) -> str:
        """Store ``data`` under a new id (the entry's ``qid`` is replaced); return the id."""
        qid = f"{int(time.time() * 1000):x}{secrets.token_hex(5)}"
        meta = json.dumps({**asdict(entry), "qid": qid, "size": len(data)}).encode()
        tmp_data, tmp_meta = self.root / f".{qid}.eml.tmp", self.root / f".{qid}.json.tmp"
        write_new(tmp_data, data, sync=self._sync)
        write_new(tmp_meta, meta, sync=self._sync)
        os.rename(tmp_data, self._path(qid, ".eml"))
        os.rename(tmp_meta, self._path(qid, ".json"))
        if self._sync:
            sync_dir(self.root)
        return qid

    def get(self, qid: str) -> tuple[QuarantineEntry, bytes]:
        try:
            meta = json.loads(self._path(qid, ".json").read_bytes())
            data = self._path(qid, ".eml").read_bytes()
        except FileNotFoundError:
            raise KeyError(qid) from None
        return _entry(meta), data

    def list(self) -> list[QuarantineEntry]:
        return sorted(self._entries(), key=lambda e: e.quarantined_at)

    def _entries(self) -> Iterator[QuarantineEntry]:  # unreadable entries are skipped, not fatal
        for path in self.root.glob("*.json"):
            try:
                yield _entry(json.loads(path.read_bytes()))
            except (OSError, ValueError, TypeError):
                continue

    def delete(self, qid: str) -> None:
        meta, data = self._path(qid, ".json"), self._path(qid, ".eml")
        if not unlink_quiet(meta):
            raise KeyError(qid)
        unlink_quiet(data)
        if self._sync:
            sync_dir(self.root)

    def expire(self, older_than: float) -> int:
        """Delete entries quarantined before ``older_than`` (epoch seconds); return how many."""
        gone = 0
        for entry in self.list():
            if entry.quarantined_at < older_than:
                self.delete(entry.qid)
                gone += 1
        return gone


def _entry(meta: dict[str, Any]) -> QuarantineEntry:
    known = set(QuarantineEntry.__dataclass_fields__)
    values = {k: v for k, v in meta.items() if k in known}
    for key in ("recipients", "findings"):
        values[key] = tuple(values.get(key) or ())
    return QuarantineEntry(**values)
