"""Start-up repair of the spool: what a crash or power cut can leave behind, put right.

Run once by the gateway before it accepts or delivers anything (``Spool.recover()``):

- ``tmp/`` leftovers are deleted: nothing there was ever acknowledged or is still wanted.
- ACTIVE records were mid-delivery when the process died: ``crash_count`` goes up by one and
  the message goes back to INCOMING, or to HOLD with reason ``poison`` once the count reaches
  the threshold (Exchange's PoisonThreshold, 2 by default; Mailman's shunt queue).
- Records that do not parse, or whose data file is missing, move to CORRUPT. They are never
  deleted: an administrator decides (``queue show``, ``queue export``, ``queue remove``).
- Data files without metadata anywhere are orphans (a crash before the commit rename, or after
  a removal unlinked the metadata) and are deleted.

This module is the spool's friend: it works on ``Spool``'s folders through its private helpers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from edgeward.queue.files import sync_dir, unlink_quiet
from edgeward.queue.model import MessageRecord, QueueState, decode_record, valid_id

if TYPE_CHECKING:
    from edgeward.queue.spool import Spool

__all__ = ["RecoveryReport", "recover_spool"]


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What ``Spool.recover()`` found and did."""

    requeued: tuple[str, ...] = ()  # were ACTIVE: back to INCOMING with crash_count + 1
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
    poisoned: list[str] = []
    corrupt: list[str] = []
    known: set[str] = set()
    for state in (QueueState.ACTIVE, QueueState.INCOMING, QueueState.DEFERRED, QueueState.HOLD):
        for msg_id in _ids(spool._dirs[state], ".json"):
            path = spool._meta(state, msg_id)
            try:
                record = decode_record(path.read_bytes(), state)
                ok = valid_id(msg_id) and record.id == msg_id and spool._data_path(msg_id).exists()
            except ValueError:
                ok = False
            if not ok:
                os.rename(path, spool._meta(QueueState.CORRUPT, msg_id))
                corrupt.append(msg_id)
                known.add(msg_id)
                continue
            known.add(msg_id)
            if state is QueueState.ACTIVE:
                (poisoned if _requeue(spool, record) is QueueState.HOLD else requeued).append(msg_id)
    known.update(_ids(spool._dirs[QueueState.CORRUPT], ".json"))

    orphans = 0
    for msg_id in _ids(spool._data, ".eml"):
        if msg_id not in known:
            orphans += unlink_quiet(spool._data_path(msg_id))

    if spool._sync:
        for folder in (spool._tmp, spool._data, *spool._dirs.values()):
            sync_dir(folder)
    return RecoveryReport(tuple(requeued), tuple(poisoned), tuple(corrupt), tmp_removed, orphans)


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
        try:
            record = decode_record(path.read_bytes(), QueueState.ACTIVE)
        except (ValueError, FileNotFoundError):
            if path.exists():
                os.rename(path, spool._meta(QueueState.CORRUPT, msg_id))
                corrupt.append(msg_id)
            continue
        (poisoned if _requeue(spool, record) is QueueState.HOLD else requeued).append(msg_id)
    if spool._sync:
        for state in (QueueState.ACTIVE, QueueState.INCOMING, QueueState.HOLD):
            sync_dir(spool._dirs[state])
    return RecoveryReport(tuple(requeued), tuple(poisoned), tuple(corrupt))
