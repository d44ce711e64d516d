"""Start-up repair of the spool: what a crash or power cut can leave behind, put right.

Run once by the gateway before it accepts or delivers anything (``Spool.recover()``):

- ``tmp/`` leftovers are deleted: nothing there was ever acknowledged or is still wanted.
- ACTIVE records were mid-delivery when the process died: ``crash_count`` goes up by one and
  the message goes back to INCOMING, or to HOLD with reason ``poison`` once the count reaches
  the threshold (Exchange's PoisonThreshold, 2 by default; Mailman's shunt queue).
- Records that do not parse, cannot be opened, or whose data file is missing, move to CORRUPT
  (``Spool.set_aside``: logged and reported). They are never deleted: an administrator decides
  (``queue show``, ``queue export``, ``queue remove``). One exception: an INCOMING record that
  is empty or does not parse while its data file's head holds the record the message was
  queued with is rebuilt from that head. The metadata of an incoming message is written
  unflushed (``queue.commit``), so this is what a power cut leaves; nothing else writes there.
- Data files without metadata anywhere: one whose head is live lost its metadata to a power cut
  (or to a crash between the two renames of its commit, before its ``250``) and is put back in
  ``incoming/`` from its head, logged; one marked finished (a crash between marking and
  unlinking) or without a head is an orphan and is deleted.

This module is the spool's friend: it works on ``Spool``'s folders through its private helpers.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgeward.queue import datafile
from edgeward.queue.files import sync_dir, unlink_quiet
from edgeward.queue.model import MessageRecord, QueueState, decode_record, valid_id

if TYPE_CHECKING:
    from edgeward.queue.spool import Spool

__all__ = ["RecoveryReport", "recover_spool"]

log = logging.getLogger(__name__)

# What a torn write leaves (an empty or partly written file); not a file someone else put there.
_TORN = ("corrupt: not JSON", "corrupt: not a queue record")


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What ``Spool.recover()`` found and did."""

    requeued: tuple[str, ...] = ()  # were ACTIVE: back to INCOMING with crash_count + 1
    restored: tuple[str, ...] = ()  # metadata lost or empty: rebuilt from the data file's head
    poisoned: tuple[str, ...] = ()  # reached the poison threshold: parked in HOLD
    corrupt: tuple[str, ...] = ()  # unreadable metadata or missing data: moved to CORRUPT
    tmp_removed: int = 0
    orphans_removed: int = 0


def _ids(folder: os.PathLike[str], suffix: str) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name[: -len(suffix)] for e in it if e.name.endswith(suffix))


def recover_spool(spool: Spool, *, active_only: bool = False) -> RecoveryReport:
    """Repair the spool; ``active_only`` after a delivery process died while sessions still run.

    Sessions write into ``tmp/`` and ``data/`` while they accept mail, so with ``active_only``
    only the records the dead process held in ``active/`` are touched.
    """
    if active_only:
        return _requeue_active(spool)
    tmp_removed = 0
    with os.scandir(spool._tmp) as it:
        for entry in list(it):
            tmp_removed += unlink_quiet(spool._tmp / entry.name)

    requeued: list[str] = []
    restored: list[str] = []
    poisoned: list[str] = []
    corrupt: list[str] = []
    known: set[str] = set()
    for state in (QueueState.ACTIVE, QueueState.INCOMING, QueueState.DEFERRED, QueueState.HOLD):
        for msg_id in _ids(spool._dirs[state], ".json"):
            path = spool._meta(state, msg_id)
            reason = _unusable(spool, path, state, msg_id)
            torn = isinstance(reason, str) and state is QueueState.INCOMING and reason.startswith(_TORN)
            if torn and _restore(spool, msg_id, f"its metadata was unusable ({reason})"):
                restored.append(msg_id)
                known.add(msg_id)
                continue
            if isinstance(reason, str):
                if spool.set_aside(msg_id, state, reason):
                    corrupt.append(msg_id)
                known.add(msg_id)
                continue
            if reason is None:
                continue  # moved by someone else meanwhile
            record = reason
            known.add(msg_id)
            if state is QueueState.ACTIVE:
                (poisoned if _requeue(spool, record) is QueueState.HOLD else requeued).append(msg_id)
    # "<id>.<suffix>.json" is a second corrupt entry of the same id (see Spool.set_aside).
    known.update(name.partition(".")[0] for name in _ids(spool._dirs[QueueState.CORRUPT], ".json"))

    orphans = 0
    for msg_id in _ids(spool._data, ".eml"):
        if msg_id in known:
            continue
        if valid_id(msg_id) and _restore(spool, msg_id, "its metadata was lost"):
            restored.append(msg_id)
        else:
            orphans += unlink_quiet(spool._data_path(msg_id))

    if spool._sync:
        for folder in (spool._tmp, spool._data, *spool._dirs.values()):
            sync_dir(folder)
    return RecoveryReport(
        tuple(requeued), tuple(restored), tuple(poisoned), tuple(corrupt), tmp_removed, orphans
    )


def _restore(spool: Spool, msg_id: str, why: str) -> bool:
    """Rebuild the INCOMING record of ``msg_id`` from its data file's head; False if the head
    holds no usable record of that id (then the caller does what it would have done)."""
    path = spool._data_path(msg_id)
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return False
        raw = datafile.embedded_record(path)
        if raw is None:
            return False
        record = decode_record(raw, QueueState.INCOMING)
    except (OSError, ValueError):
        return False
    if record.id != msg_id:
        return False
    spool._rewrite(replace(record, state=QueueState.INCOMING), QueueState.INCOMING)
    log.warning("queue entry %s restored to incoming/ from its data file: %s", msg_id, why)
    return True


def _unusable(spool: Spool, path: Path, state: QueueState, msg_id: str) -> MessageRecord | str | None:
    """The record at ``path``; or why it cannot be used; or None if the file is gone."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return "not a regular file"  # a FIFO would block the read, a link lead elsewhere
        record = decode_record(path.read_bytes(), state)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    except ValueError as exc:
        return f"corrupt: {exc}"
    if not valid_id(msg_id) or record.id != msg_id:
        return f"corrupt: the record names id {record.id}"
    try:
        if not spool._data_path(msg_id).exists():
            return "the data file is missing"
    except OSError as exc:
        return f"the data file cannot be checked: {exc.strerror}"
    return record


def _requeue(spool: Spool, record: MessageRecord) -> QueueState:
    """Put an ACTIVE record back (INCOMING) or park it as poison (HOLD); return where it went."""
    record = replace(record, crash_count=record.crash_count + 1)
    if record.crash_count >= spool._poison_threshold:
        record, target = replace(record, hold_reason="poison"), QueueState.HOLD
    else:
        target = QueueState.INCOMING
    # Rewrite in active/ first, then rename: the record is never in two folders.
    spool._rewrite(replace(record, state=target), QueueState.ACTIVE)
    os.rename(spool._meta(QueueState.ACTIVE, record.id), spool._meta(target, record.id))
    return target


def _requeue_active(spool: Spool) -> RecoveryReport:
    requeued: list[str] = []
    poisoned: list[str] = []
    corrupt: list[str] = []
    for msg_id in _ids(spool._dirs[QueueState.ACTIVE], ".json"):
        path = spool._meta(QueueState.ACTIVE, msg_id)
        reason = _unusable(spool, path, QueueState.ACTIVE, msg_id)
        if reason is None:
            continue
        if isinstance(reason, str):
            if spool.set_aside(msg_id, QueueState.ACTIVE, reason):
                corrupt.append(msg_id)
            continue
        record = reason
        (poisoned if _requeue(spool, record) is QueueState.HOLD else requeued).append(msg_id)
    if spool._sync:
        for state in (QueueState.ACTIVE, QueueState.INCOMING, QueueState.HOLD):
            sync_dir(spool._dirs[state])
    return RecoveryReport(requeued=tuple(requeued), poisoned=tuple(poisoned), corrupt=tuple(corrupt))
