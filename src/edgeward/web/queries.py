"""Tracking searches and queue pages as the pages and the API ask for them.

The criteria are those of ``edgeward track`` (sender, recipient, Message-ID, queue id, time
range as ISO-8601 or an age such as ``2h``, event); the search itself is
``logs.tracking.search`` and the "why" of a message is ``logs.why.explain``, the very lines
``edgeward track why`` prints. Bad criteria are ``ValueError`` with a sentence to show; a
tracking file the console cannot open (owned by another user, a folder in its place) is
:class:`LogUnreadable`, which the fronts answer with 503 and that sentence, not a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeward.logs.tracking import TrackingEvent, search
from edgeward.logs.why import explain, parse_when
from edgeward.queue.model import MessageRecord, QueueState

if TYPE_CHECKING:
    from edgeward.web.app import Console

__all__ = ["LogUnreadable", "TrackingQuery", "queue_page", "track_search", "why_lines"]


class LogUnreadable(Exception):
    """A tracking file exists but cannot be read by this process."""


@dataclass(frozen=True, slots=True)
class TrackingQuery:
    sender: str = ""
    recipient: str = ""
    message_id: str = ""
    msg_id: str = ""
    since: str = ""
    until: str = ""
    event: str = ""


def _when(text: str, what: str) -> datetime | None:
    if not text.strip():
        return None
    try:
        return parse_when(text)
    except ValueError:
        raise ValueError(f"{what}: not an ISO date/time nor an age such as 2h or 3d") from None


def _event(text: str) -> TrackingEvent | None:
    if not text.strip():
        return None
    try:
        return TrackingEvent(text.strip().upper())
    except ValueError:
        names = ", ".join(e.value for e in TrackingEvent)
        raise ValueError(f"unknown event; one of {names}") from None


def track_search(console: Console, q: TrackingQuery, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` matching entries, oldest first, and whether there were more."""
    since, until, event = _when(q.since, "since"), _when(q.until, "until"), _event(q.event)
    if not console.log_dir.is_dir():
        return [], False
    found = search(
        console.log_dir, sender=q.sender or None, recipient=q.recipient or None,
        message_id=q.message_id or None, msg_id=q.msg_id or None, since=since, until=until, event=event,
    )  # fmt: skip
    entries = _read(lambda: list(islice(found, limit + 1)))
    return entries[:limit], len(entries) > limit


def _read(take: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    try:
        return take()
    except OSError as exc:  # the search opens the files lazily, while it is consumed
        where = Path(exc.filename).name if exc.filename else "a tracking file"
        raise LogUnreadable(f"the tracking log cannot be read ({where}: {exc.strerror})") from None


def why_lines(console: Console, msg_id: str) -> list[str]:
    """``edgeward track why``'s lines for a queue id (empty when no verdict is logged)."""
    if not console.log_dir.is_dir():
        return []
    return explain(_read(lambda: list(search(console.log_dir, msg_id=msg_id))))


def queue_page(console: Console, state: str, page: int, size: int) -> tuple[list[MessageRecord], int]:
    """One page of the queue, oldest first (``Spool.list``, as ``edgeward queue list``), and the total.
    ``ValueError`` for a state that is none."""
    wanted = None
    if state:
        try:
            wanted = QueueState(state.lower())
        except ValueError:
            names = ", ".join(s.value for s in QueueState)
            raise ValueError(f"unknown queue state; one of {names}") from None
    records = console.quarantine.queue().list(wanted)
    start = (page - 1) * size
    return records[start : start + size], len(records)
