"""The queue viewer's operations on the spool: hold, release, retry and remove a message.

Run by an administrator's command (or the web UI) in another process than the gateway's, so
each first renames the file somewhere the queue manager never looks (``hold/`` or ``tmp/``) and
only then rewrites it: the two never write the same file. A file that vanished between looking
and acting is retried a few times, then reported as ``KeyError``.

This module is the spool's friend, like ``queue.recovery``: it works through ``Spool``'s private
helpers, and ``Spool``'s methods of the same names call it.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

from edgeward.errors import QueueError
from edgeward.queue import datafile
from edgeward.queue.files import sync_dir, unlink_quiet
from edgeward.queue.model import MessageRecord, QueueState, decode_record

if TYPE_CHECKING:
    from edgeward.queue.spool import Spool

__all__ = ["hold", "release", "remove", "retry"]


def hold(spool: Spool, msg_id: str, reason: str = "admin") -> None:
    """Hold a waiting message (Exchange's Suspend-Message). Not while it is being delivered."""
    for _ in range(3):
        src = spool._locate(msg_id)
        if src is QueueState.ACTIVE:
            raise QueueError(f"message {msg_id} is being delivered; try again in a moment")
        if src is QueueState.CORRUPT:
            raise QueueError(f"message {msg_id} has unreadable metadata and cannot be held")
        try:
            # Rename first: once in hold/ the queue manager never touches the file.
            spool._move(msg_id, src, QueueState.HOLD)
        except FileNotFoundError:
            continue
        record = spool._read(QueueState.HOLD, msg_id)
        if record.state is QueueState.CORRUPT:
            # Rewriting the placeholder would destroy what is left of the record.
            spool.set_aside(msg_id, QueueState.HOLD, record.hold_reason)
            raise QueueError(f"message {msg_id} has unreadable metadata; moved to corrupt/")
        spool._rewrite(replace(record, hold_reason=reason, state=QueueState.HOLD), QueueState.HOLD)
        return
    raise KeyError(msg_id)


def release(spool: Spool, msg_id: str) -> None:
    """HOLD -> DEFERRED, due now. A CORRUPT message is released only if its metadata now
    reads (an administrator repaired it) and its data exists; otherwise ``QueueError``.

    ``crash_count`` is kept: a released poison message that crashes again is parked again
    at once, rather than being allowed to crash the gateway ``poison_threshold`` more times.
    """
    src = spool._locate(msg_id)
    if src not in (QueueState.HOLD, QueueState.CORRUPT):
        raise QueueError(f"message {msg_id} is not held (it is {src.value})")
    try:
        record = decode_record(spool._meta(src, msg_id).read_bytes(), src)
    except OSError as exc:
        raise QueueError(f"message {msg_id} cannot be read ({exc.strerror})") from None
    except ValueError as exc:
        raise QueueError(f"message {msg_id} has unreadable metadata ({exc}); export and remove it") from None
    if not spool._data_path(msg_id).exists():
        raise QueueError(f"message {msg_id} has no data file; remove it")
    now = spool._clock.now()
    spool._rewrite(replace(record, hold_reason="", next_attempt_at=now), src)
    spool._move(msg_id, src, QueueState.DEFERRED)


def retry(spool: Spool, msg_id: str | None = None) -> int:
    """Make one or all DEFERRED messages due now by moving them to INCOMING (always due).

    A plain rename: it races with nothing, and a retry lost in a power cut costs only a wait.
    """
    ids = [msg_id] if msg_id is not None else [r.id for r in spool._scan(QueueState.DEFERRED)]
    count = 0
    for one in ids:
        spool._check(one)
        try:
            os.rename(spool._meta(QueueState.DEFERRED, one), spool._meta(QueueState.INCOMING, one))
        except FileNotFoundError:
            if msg_id is not None:
                spool._locate(one)  # KeyError if it does not exist at all
            continue
        count += 1
    return count


def remove(spool: Spool, msg_id: str) -> MessageRecord:
    """Delete a message that is not being delivered; returns its record (e.g. for an NDR)."""
    for _ in range(3):
        src = spool._locate(msg_id)
        if src is QueueState.ACTIVE:
            raise QueueError(f"message {msg_id} is being delivered; try again in a moment")
        grabbed = spool._tmp_path(msg_id, "rm")
        data = spool._data_path(msg_id)
        # Marked first, then into tmp/: a crash from here on leaves only what recover() deletes
        # (a data file without metadata is restored unless it is marked finished).
        datafile.mark_finished(data)
        try:
            os.rename(spool._meta(src, msg_id), grabbed)
        except FileNotFoundError:
            datafile.unmark(data)
            continue
        except OSError:
            datafile.unmark(data)
            raise
        try:
            record = replace(decode_record(grabbed.read_bytes(), src), state=src)
        except ValueError as exc:
            record = spool._placeholder(msg_id, f"corrupt: {exc}")
        except OSError as exc:
            record = spool._placeholder(msg_id, f"unreadable: {exc.strerror}")
        os.unlink(grabbed)
        unlink_quiet(data)
        if spool._sync:
            sync_dir(spool._dirs[src])
        return record
    raise KeyError(msg_id)
