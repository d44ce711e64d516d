"""The quarantine manager: list, search, show, release, delete, export and purge.

A thin front (the ``edgeward quarantine`` commands, a web console) calls this and nothing
else; no HTTP and no terminal here. Each action that takes a message out of the quarantine
is written to the tracking log through ``track`` (RELEASE with the new queue id, REMOVE,
EXPIRE; an export from the web console as EXPORT), so ``edgeward track`` tells a message's
whole history.

Search asks the SQLite index (``quarantine.index``) when the store keeps one, as
:func:`open_store` makes it: the index is reconciled with the folder first, the page's
entries are read from their files and checked against the query again, and an index that
cannot be used is built again; after three tries at a consistent page (files changing under
it) the search reads every metadata file, as it does without an index. Criteria are
case-insensitive substrings except the date range; ``finding`` matches a finding name, a scan
engine or a signature.

Release re-queues the message through the spool with the envelope it arrived with, straight
to delivery: the filters that caught it are not run again. A release to some of the
recipients leaves the entry in place for the others. With ``learn`` given, a release also
teaches the classifier the message was not spam.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgeward.config.schema import Config
from edgeward.quarantine.crypto import KeyMismatch, Keyring
from edgeward.quarantine.entry import QuarantineEntry
from edgeward.quarantine.index import IndexDamaged, QuarantineIndex
from edgeward.quarantine.store import QuarantineError, QuarantineStore, release_record
from edgeward.quarantine.view import MessageView, view_message
from edgeward.queue.spool import Spool

__all__ = ["Page", "QuarantineService", "Released", "Search", "Shown", "open_store"]

Track = Callable[..., None]
log = logging.getLogger(__name__)


def open_store(config: Config, on_corrupt: Callable[[str, str], None] | None = None) -> QuarantineStore:
    """The configured store (sealed with the key file when ``[quarantine]`` names one)."""
    key_file = config.quarantine.encryption_key_file
    keyring = Keyring(config.resolve(key_file)) if key_file is not None else None
    return QuarantineStore(
        config.resolve(Path("quarantine")), fsync=config.queue.fsync, on_corrupt=on_corrupt, keyring=keyring,
        indexed=True,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Search:
    sender: str = ""
    recipient: str = ""
    subject: str = ""
    reason: str = ""
    finding: str = ""  # a finding name, a scan engine or a signature
    since: float | None = None
    until: float | None = None
    offset: int = 0
    limit: int = 100

    def matches(self, e: QuarantineEntry) -> bool:
        def has(needle: str, *hay: str) -> bool:
            return not needle or any(needle.lower() in h.lower() for h in hay)

        if self.since is not None and e.quarantined_at < self.since:
            return False
        if self.until is not None and e.quarantined_at >= self.until:
            return False
        engines = [x for r in e.engines for x in (r.engine, r.signature, r.finding)]
        return (
            has(self.sender, e.mail_from)
            and has(self.recipient, *e.recipients)
            and has(self.subject, e.subject)
            and has(self.reason, e.reason, e.decided_by)
            and has(self.finding, *e.findings, *engines)
        )


@dataclass(frozen=True, slots=True)
class Page:
    entries: tuple[QuarantineEntry, ...]
    total: int  # how many matched, over all pages
    offset: int


@dataclass(frozen=True, slots=True)
class Shown:
    entry: QuarantineEntry
    view: MessageView


@dataclass(frozen=True, slots=True)
class Released:
    qid: str
    msg_id: str
    recipients: tuple[str, ...]
    remaining: tuple[str, ...]  # still held (a release to some of the recipients)
    learned: bool


class QuarantineService:
    def __init__(
        self,
        store: QuarantineStore,
        spool: Callable[[], Spool],
        track: Track,
        *,
        learn: Callable[[bytes], None] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._spool = spool
        self._track = track
        self._learn = learn
        self._now = now

    def queue(self) -> Spool:
        """The spool releases go to (digests are queued there too)."""
        return self._spool()

    def search(self, query: Search | None = None) -> Page:
        """Entries matching ``query``, newest first, one page of them."""
        q = query or Search()
        if self.store.index is not None:
            page = self._indexed(self.store.index, q)
            if page is not None:
                return page
        found = [e for e in self.store.list() if q.matches(e)]
        found.reverse()
        offset, limit = max(q.offset, 0), max(q.limit, 0)
        return Page(tuple(found[offset : offset + limit]), len(found), offset)

    def _indexed(self, index: QuarantineIndex, q: Search) -> Page | None:
        """The page from the index, each entry read from its file; None if no try gave a
        consistent page (the caller then reads every file)."""
        for _ in range(3):
            try:
                index.reconcile(self.store.listable)
                answer = index.query(q)
            except (IndexDamaged, sqlite3.Error) as exc:
                log.error("quarantine index unusable (%s); building it again from the files", exc)
                try:
                    self.reindex()
                except (IndexDamaged, sqlite3.Error, OSError) as again:
                    # A search never fails for its index: the files answer, as without one.
                    log.error("quarantine index cannot be built (%s); searching the files", again)
                    return None
                continue
            if answer is None:
                return None
            qids, total = answer
            entries: list[QuarantineEntry] = []
            for qid in qids:
                entry = self.store.listable(qid)
                if entry is not None and q.matches(entry):
                    entries.append(entry)
                    continue
                # A row older than its file: corrected, and the query asked again.
                index.kept(functools.partial(index.remove, [qid]) if entry is None
                           else functools.partial(index.upsert, [entry]))  # fmt: skip
                break
            else:
                return Page(tuple(entries), total, max(q.offset, 0))
        return None

    def reindex(self, progress: Callable[[int], None] | None = None) -> int:
        """Build the search index again from the files; the number of entries indexed."""
        index = self.store.index
        if index is None:
            return 0
        return index.rebuild(self.store.list(), progress)

    def entry(self, qid: str) -> QuarantineEntry:
        """The metadata only; ``KeyError`` if there is none."""
        return self.store.entry(qid)

    def show(self, qid: str) -> Shown:
        entry, data = self.store.get(qid)
        return Shown(entry, view_message(data))

    def export(self, qid: str, *, by: str = "") -> bytes:
        """The message as it arrived (RFC 5322 bytes, CRLF), for a .eml file. With ``by`` the copy
        is tracked as EXPORT naming who took it (the web console's downloads)."""
        entry, data = self.store.get(qid)
        if by:
            self._removed(qid, entry, "EXPORT", f"exported from quarantine by {by}")
        return data

    async def release(
        self,
        qid: str,
        recipients: Sequence[str] | None = None,
        *,
        learn: bool = False,
        by: str = "administrator",
    ) -> Released:
        """Queue the message for ``recipients`` (all when None); ``ValueError`` naming any that
        the entry does not hold, ``KeyError`` if the entry is gone."""
        entry, data = self.store.get(qid)
        held = {r.lower(): r for r in entry.recipients}
        wanted = list(held) if recipients is None else [r.lower() for r in recipients]
        unknown = [r for r in wanted if r not in held]
        if unknown or not wanted:
            raise ValueError(f"not a recipient of {qid}: {', '.join(unknown) or '(none given)'}")
        spool = self._spool()
        record = release_record(entry, data, msg_id=spool.new_id(), now=self._now())
        chosen = tuple(r for r in record.recipients if r.address.lower() in wanted)
        record = replace(record, recipients=chosen)
        msg_id = await spool.accept(record, data)
        addresses = tuple(r.address for r in chosen)
        self._track(
            "RELEASE", msg_id=msg_id, message_id=record.message_id, sender=record.mail_from,
            recipients=addresses, client_ip=record.client_ip, size=record.size,
            detail=f"from quarantine {qid} by {by}",
        )  # fmt: skip
        remaining = tuple(r for r in entry.recipients if r.lower() not in wanted)
        # Deleted meanwhile (retention, another administrator): released all the same.
        with contextlib.suppress(KeyError):
            if remaining:
                self.store.rewrite(replace(entry, recipients=remaining))
            else:
                self.store.delete(qid)
        learned = False
        if learn and self._learn is not None:
            self._learn(data)
            learned = True
        return Released(qid, msg_id, addresses, remaining, learned)

    def delete(self, qid: str, *, by: str = "administrator") -> QuarantineEntry | None:
        """Delete an entry for good (an unusable one too); returns what it was when readable."""
        try:
            entry: QuarantineEntry | None = self.store.entry(qid)
        except (KeyError, QuarantineError, KeyMismatch):
            entry = None  # deleting is how an unusable entry is got rid of
        self.store.delete(qid)
        self._removed(qid, entry, "REMOVE", f"from quarantine by {by}")
        return entry

    def purge(
        self, query: Search | None = None, *, progress: Callable[[int, int], None] | None = None
    ) -> list[QuarantineEntry]:
        """Delete every entry matching ``query`` (all pages; ``offset``/``limit`` ignored)."""
        q = replace(query or Search(), offset=0, limit=1 << 62)
        doomed = [e for e in self.store.list() if q.matches(e)]
        gone: list[QuarantineEntry] = []
        for n, entry in enumerate(doomed, 1):
            try:
                self.store.delete(entry.qid)
            except KeyError:
                continue
            self._removed(entry.qid, entry, "REMOVE", "purged from quarantine by administrator")
            gone.append(entry)
            if progress is not None:
                progress(n, len(doomed))
        return gone

    def purge_expired(self, retention: float) -> list[QuarantineEntry]:
        """Retention now: delete what is older than ``retention`` seconds (nothing for 0)."""
        if retention <= 0:
            return []
        gone = self.store.expire(self._now() - retention)
        for entry in gone:
            self._removed(entry.qid, entry, "EXPIRE", "quarantine retention")
        return gone

    def _removed(self, qid: str, entry: QuarantineEntry | None, event: str, detail: str) -> None:
        fields: dict[str, Any] = {"msg_id": qid, "detail": detail}
        if entry is not None:
            fields |= {
                "sender": entry.mail_from, "recipients": entry.recipients, "client_ip": entry.client_ip,
                "size": entry.size, "message_id": entry.message_id,
            }  # fmt: skip
        self._track(event, **fields)
