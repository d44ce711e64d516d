"""The durable spool: messages as files, the folder a message's metadata lives in is its state.

Layout under ``root`` (folders 0700, files 0600)::

    tmp/                 files being written; anything here at start is a leftover, deleted
    data/<id>.eml        the message bytes (RFC 5322, CRLF) after a head holding the record the
                         message was queued with (``queue.datafile``); written once
    incoming/<id>.json   accepted, waiting for its first attempt (always due)
    active/<id>.json     claimed by the queue manager: a delivery attempt is running
    deferred/<id>.json   waiting for ``next_attempt_at``
    hold/<id>.json       held by an administrator, or parked as poison
    corrupt/<id>.json    metadata that could not be read; kept for inspection, never deleted

Accepting (Postfix's fsync-before-rename, ``queue.commit``): the data file, with the record in
its head, is written and flushed in ``tmp/`` and linked into ``data/``, ``data/`` is flushed
(the commit point: the message now survives a power cut), then the metadata, written unflushed
in ``tmp/``, is renamed into ``incoming/`` (the queue manager sees it from here). One file flush
per message and one folder flush per round of concurrent ``accept()`` calls. A data file without metadata is
put back in ``incoming/`` by ``recover()`` from its head (a power cut took the metadata), unless
its head says the message was finished (delivered or removed: ``datafile.mark_finished`` runs
before the metadata is unlinked) or it has none (written before this format); those are
deleted. So is anything left in ``tmp/``: nothing half-written is ever visible.

Crash counting (Mailman's poison parking, Exchange's PoisonThreshold): ``claim()`` is one
rename into ``active/``; a record still there at start-up was mid-delivery, so ``recover()``
adds one to its ``crash_count`` and parks it in ``hold/`` (reason ``poison``) at the threshold.
A rename survives a process crash (the case a poison message causes) without an fsync, so
claiming costs no disk flush.

Unreadable entries (Mailman's "bad" queue): a record that does not parse, names another id, or
cannot be opened (say a root-owned 0600 file an administrator's command left behind) is moved
to ``corrupt/`` the moment a scan or a claim meets it, logged, and reported through
``on_corrupt`` (the gateway writes a CORRUPT tracking event); so is a message whose data file
cannot be read (:meth:`Spool.set_aside`). One bad file therefore never stops the scan that
finds the others, and nothing is deleted: the folder, not the file's owner, decides whether it
can be moved, so even a file the gateway cannot read is moved aside.

Several processes share the spool (the gateway and the CLI). Every change of state is an atomic
rename; an operator action first renames the file somewhere the queue manager never looks
(``hold/`` or ``tmp/``) and only then rewrites it, so the two never write the same file. A file
that vanished between listing and acting is reported as ``KeyError`` or skipped.

Security: message files are private (0600 in 0700 folders), created with ``O_EXCL`` and
``O_NOFOLLOW``; ids from outside are validated before they become file names. Run as root (an
administrator's command), the spool gives every file and folder it creates to the owner of the
spool folder before publishing it (``config.ownership``), so the gateway can always read it.
"""

from __future__ import annotations

import builtins
import logging
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from edgeward.config.ownership import service_owner
from edgeward.errors import QueueError
from edgeward.message_file import MessageFile
from edgeward.ports import Clock, SystemClock
from edgeward.queue import actions, datafile
from edgeward.queue.commit import GroupCommitter
from edgeward.queue.files import make_dirs, sync_dir, unlink_quiet, write_new
from edgeward.queue.model import (
    IdGenerator,
    MessageRecord,
    QueueState,
    decode_record,
    encode_record,
    valid_id,
)
from edgeward.queue.recovery import RecoveryReport, recover_spool
from edgeward.queue.spill import SpillFile

__all__ = ["RecoveryReport", "Spool"]

log = logging.getLogger(__name__)

# The order load() looks in: the folders a message passes through, in the order it does.
_SEARCH = (QueueState.INCOMING, QueueState.ACTIVE, QueueState.DEFERRED, QueueState.HOLD, QueueState.CORRUPT)


class Spool:
    """The on-disk queue. See the module docstring for the layout and its guarantees."""

    def __init__(
        self,
        root: Path,
        *,
        fsync: bool = True,
        clock: Clock | None = None,
        poison_threshold: int = 2,
        on_commit: Callable[[int], None] | None = None,
        on_corrupt: Callable[[str, str], None] | None = None,
    ) -> None:
        """``on_commit`` is called (in the worker thread) with the size of each group commit;
        ``on_corrupt`` with the id and the reason of each entry moved to ``corrupt/``."""
        self.root = Path(root)
        self.on_corrupt = on_corrupt
        self._owner = service_owner(self.root)
        self._sync = fsync
        self._clock = clock if clock is not None else SystemClock()
        self._poison_threshold = poison_threshold
        self._ids = IdGenerator(self._clock)
        self._tmp = self.root / "tmp"
        self._data = self.root / "data"
        self._dirs = {s: self.root / s.value for s in QueueState}
        make_dirs(self.root, self._tmp, self._data, *self._dirs.values(), owner=self._owner)
        self._committer = GroupCommitter(
            tmp=self._tmp,
            data=self._data,
            incoming=self._dirs[QueueState.INCOMING],
            sync=fsync,
            on_commit=on_commit,
            owner=self._owner,
        )
        self._cache: dict[tuple[QueueState, str], tuple[tuple[int, int, int], MessageRecord]] = {}

    # -- paths ---------------------------------------------------------------------------------

    def _meta(self, state: QueueState, msg_id: str) -> Path:
        return self._dirs[state] / f"{msg_id}.json"

    def _data_path(self, msg_id: str) -> Path:
        return self._data / f"{msg_id}.eml"

    def _tmp_path(self, msg_id: str, what: str) -> Path:
        return self._tmp / f"{msg_id}.{what}.{secrets.token_hex(4)}"

    @staticmethod
    def _check(msg_id: str) -> None:
        if not valid_id(msg_id):
            raise KeyError(msg_id)

    # -- accepting -----------------------------------------------------------------------------

    def new_id(self) -> str:
        return self._ids()

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    async def accept(self, record: MessageRecord, data: bytes) -> str:
        """Store a message durably and return its id (a new one if ``record.id`` is empty)."""
        if not record.id:
            record = replace(record, id=self.new_id())
        elif not valid_id(record.id):
            raise QueueError(f"invalid queue id {record.id!r}")
        record = replace(record, state=QueueState.INCOMING)
        return await self._committer.submit(record.id, data, encode_record(record))

    async def accept_file(self, record: MessageRecord, message: MessageFile) -> str:
        """``accept`` for a message kept in a file (``message.header`` then its body), copied
        into ``data/`` by the kernel; the caller still owns and removes ``message.path``."""
        if not valid_id(record.id):
            raise QueueError(f"invalid queue id {record.id!r}")
        record = replace(record, state=QueueState.INCOMING)
        return await self._committer.submit(record.id, message.header, encode_record(record), source=message)

    def spill_file(self) -> SpillFile:
        """A private file in ``tmp/`` for a large message arriving (``smtp.data.BodySink``)."""
        return SpillFile(self._tmp, self._owner)

    # -- reading -------------------------------------------------------------------------------

    def _read(self, state: QueueState, msg_id: str) -> MessageRecord:
        """Read one record (FileNotFoundError if it moved); unreadable ones come back as CORRUPT.

        Other ``OSError``s (EMFILE, EIO) propagate: they say nothing about the file itself, so
        they must not get a good message moved aside.
        """
        path = self._meta(state, msg_id)
        if not stat.S_ISREG(path.lstat().st_mode):
            return self._placeholder(msg_id, "not a regular file")  # a FIFO would block the read
        try:
            raw = path.read_bytes()
        except (PermissionError, IsADirectoryError) as exc:
            return self._placeholder(msg_id, f"unreadable: {exc.strerror}")
        try:
            record = decode_record(raw, state)
        except ValueError as exc:
            return self._placeholder(msg_id, f"corrupt: {exc}")
        if record.id != msg_id:
            return self._placeholder(msg_id, f"corrupt: the record names id {record.id}")
        return record

    def _placeholder(self, msg_id: str, reason: str) -> MessageRecord:
        try:
            with self._data_path(msg_id).open("rb") as fh:
                st = os.fstat(fh.fileno())
                size, when = st.st_size - datafile.message_offset(fh), st.st_mtime
        except (OSError, ValueError):  # gone, or a name no data file can have
            size, when = 0, 0.0
        return MessageRecord(msg_id, "", (), when, size, hold_reason=reason, state=QueueState.CORRUPT)

    def _locate(self, msg_id: str) -> QueueState:
        self._check(msg_id)
        for state in _SEARCH:
            if self._meta(state, msg_id).exists():
                return state
        raise KeyError(msg_id)

    def load(self, msg_id: str) -> MessageRecord:
        self._check(msg_id)
        # A message may move between folders while we look; a few passes find it.
        for _ in range(3):
            for state in _SEARCH:
                try:
                    return self._read(state, msg_id)
                except FileNotFoundError:
                    continue
        raise KeyError(msg_id)

    def read_data(self, msg_id: str) -> bytes:
        with self.open_data(msg_id) as fh:
            return fh.read()

    def open_data(self, msg_id: str) -> BinaryIO:
        """The message's data file, positioned at the message (after the head)."""
        self._check(msg_id)
        try:
            fh = self._data_path(msg_id).open("rb")
        except FileNotFoundError:
            raise KeyError(msg_id) from None
        try:
            datafile.message_offset(fh)
        except BaseException:
            fh.close()
            raise
        return fh

    def export(self, msg_id: str) -> bytes:
        return self.read_data(msg_id)

    def set_aside(self, msg_id: str, state: QueueState, reason: str) -> bool:
        """Move the metadata of ``msg_id`` from ``state`` to ``corrupt/``, log and report it.

        Returns False if the file had moved on already. Never overwrites an earlier corrupt
        entry of the same name: the newcomer gets a suffix.
        """
        src = self._meta(state, msg_id)
        dst = self._meta(QueueState.CORRUPT, msg_id)
        if dst.exists():
            # A dot is never part of an id, so recovery still ties this file to its data.
            dst = self._dirs[QueueState.CORRUPT] / f"{msg_id}.{secrets.token_hex(4)}.json"
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            return False
        self._cache.pop((state, msg_id), None)
        if self._sync:
            sync_dir(self._dirs[QueueState.CORRUPT])
        log.error("queue entry %s moved from %s/ to corrupt/: %s", msg_id, state.value, reason)
        if self.on_corrupt is not None:
            try:
                self.on_corrupt(msg_id, f"{state.value}: {reason}")
            except Exception:
                log.exception("reporting corrupt entry %s failed", msg_id)
        return True

    def _scan(self, state: QueueState) -> list[MessageRecord]:
        """Records of one folder; unchanged files come from a cache keyed by inode, mtime and size.

        An unusable entry outside ``corrupt/`` is moved there and left out; an error that says
        nothing about the entry (EMFILE, EIO) skips it for this scan only, with a warning.
        """
        out: list[MessageRecord] = []
        seen: set[str] = set()
        try:
            entries = list(os.scandir(self._dirs[state]))
        except FileNotFoundError:
            return out
        for entry in entries:
            if not entry.name.endswith(".json"):
                continue
            msg_id = entry.name[:-5]
            try:
                st = entry.stat(follow_symlinks=False)
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
                cached = self._cache.get((state, msg_id))
                record = cached[1] if cached and cached[0] == key else self._read(state, msg_id)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot read queue entry %s/%s now: %s", state.value, entry.name, exc)
                continue
            if record.state is QueueState.CORRUPT and state is not QueueState.CORRUPT:
                self.set_aside(msg_id, state, record.hold_reason)
                continue
            self._cache[(state, msg_id)] = (key, record)
            seen.add(msg_id)
            out.append(record)
        for gone in [k for k in self._cache if k[0] is state and k[1] not in seen]:
            del self._cache[gone]
        return out

    def list(self, state: QueueState | None = None) -> list[MessageRecord]:
        states = list(_SEARCH) if state is None else [state]
        records = [r for s in states for r in self._scan(s)]
        return sorted(records, key=lambda r: r.id)

    def due(self, now: float, limit: int, *, horizon: float | None = None) -> builtins.list[MessageRecord]:
        """INCOMING (always due) and DEFERRED messages whose time has come, oldest first.

        A retry time more than ``horizon`` seconds ahead (the longest retry interval) was set by
        a clock that has since stepped back: such a message is due now, not after the step.
        """
        latest = None if horizon is None else now + horizon
        ready = [r for r in self._scan(QueueState.INCOMING) if r.state is QueueState.INCOMING]
        ready += [
            r
            for r in self._scan(QueueState.DEFERRED)
            if r.state is QueueState.DEFERRED
            and (r.next_attempt_at <= now or (latest is not None and r.next_attempt_at > latest))
        ]
        ready.sort(key=lambda r: (r.received_at, r.id))
        return ready[:limit]

    def counts(self) -> dict[QueueState, int]:
        counts = {}
        for state, path in self._dirs.items():
            with os.scandir(path) as it:
                counts[state] = sum(1 for e in it if e.name.endswith(".json"))
        return counts

    # -- delivery ------------------------------------------------------------------------------

    def claim(self, msg_id: str) -> MessageRecord:
        """Move a due message to ACTIVE; its folder marks the attempt as started.

        The record returned carries the stored (pre-claim) ``crash_count``; a crash before
        ``update()``/``finish()`` leaves it in ``active/`` and ``recover()`` adds one. Raises
        ``KeyError`` if the message is gone, or had unreadable metadata (then moved to CORRUPT).
        """
        self._check(msg_id)
        active = self._meta(QueueState.ACTIVE, msg_id)
        for src in (QueueState.INCOMING, QueueState.DEFERRED):
            try:
                os.rename(self._meta(src, msg_id), active)
            except FileNotFoundError:
                continue
            try:
                record = self._read(QueueState.ACTIVE, msg_id)
            except OSError as exc:
                # Not the file's fault (EMFILE, EIO): give it back for a later scan.
                os.rename(active, self._meta(src, msg_id))
                raise KeyError(f"{msg_id} cannot be read now: {exc}") from None
            if record.state is QueueState.CORRUPT:
                self.set_aside(msg_id, QueueState.ACTIVE, record.hold_reason)
                raise KeyError(f"{msg_id} has unreadable metadata; moved to corrupt/")
            return record
        raise KeyError(msg_id)

    def _rewrite(self, record: MessageRecord, state: QueueState) -> None:
        """Durably replace the metadata file of ``record`` in the folder ``state``."""
        tmp = self._tmp_path(record.id, "upd")
        write_new(tmp, encode_record(record), sync=self._sync, owner=self._owner)
        try:
            os.replace(tmp, self._meta(state, record.id))
        except OSError:
            unlink_quiet(tmp)
            raise

    def _move(self, msg_id: str, src: QueueState, dst: QueueState) -> None:
        if src is not dst:
            os.rename(self._meta(src, msg_id), self._meta(dst, msg_id))
        if self._sync:
            sync_dir(self._dirs[dst])
            if src is not dst:
                sync_dir(self._dirs[src])

    def update(self, record: MessageRecord, state: QueueState) -> None:
        """Durably store ``record`` and move it to ``state`` (after an attempt, from ACTIVE).

        The file is rewritten where it is, then renamed, so it never exists in two folders.
        """
        if state is QueueState.ACTIVE:
            raise ValueError("use claim() to make a message active")
        src = self._locate(record.id)
        try:
            self._rewrite(replace(record, state=state), src)
            self._move(record.id, src, state)
        except FileNotFoundError:
            raise KeyError(record.id) from None
        except OSError as exc:
            raise QueueError(f"cannot update message {record.id}: {exc}") from exc

    def finish(self, msg_id: str) -> None:
        """Every recipient is done: mark the data finished, remove the metadata (the commit
        point), then the data."""
        state = self._locate(msg_id)
        data = self._data_path(msg_id)
        try:
            datafile.mark_finished(data)
            os.unlink(self._meta(state, msg_id))
            if self._sync:
                sync_dir(self._dirs[state])
        except FileNotFoundError:
            datafile.unmark(data)  # moved on meanwhile: still a live message
            raise KeyError(msg_id) from None
        except OSError as exc:
            datafile.unmark(data)
            raise QueueError(f"cannot remove message {msg_id}: {exc}") from exc
        unlink_quiet(data)

    # -- queue viewer operations ---------------------------------------------------------------

    def hold(self, msg_id: str, reason: str = "admin") -> None:
        """Hold a waiting message (Exchange's Suspend-Message). Not while it is being delivered."""
        actions.hold(self, msg_id, reason)

    def release(self, msg_id: str) -> None:
        """HOLD (or repaired CORRUPT) -> DEFERRED, due now; see ``queue.actions.release``."""
        actions.release(self, msg_id)

    def retry(self, msg_id: str | None = None) -> int:
        """Make one or all DEFERRED messages due now; returns how many."""
        return actions.retry(self, msg_id)

    def remove(self, msg_id: str) -> MessageRecord:
        """Delete a message that is not being delivered; returns its record (e.g. for an NDR)."""
        return actions.remove(self, msg_id)

    # -- start-up ------------------------------------------------------------------------------

    def recover(self, *, active_only: bool = False) -> RecoveryReport:
        """Repair the spool at start-up, before this process accepts or delivers anything.

        Only one gateway may own a spool: recover() treats every ACTIVE message as abandoned.
        ``active_only`` is for a restarted delivery process while sessions keep accepting: it
        requeues the ACTIVE messages and touches nothing the sessions may be writing.
        """
        report = recover_spool(self, active_only=active_only)
        self._cache.clear()
        return report
