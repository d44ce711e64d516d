"""The message tracking log: one JSON line per event in a message's life, and its search.

Modelled on Exchange's message tracking log (MSGTRK, event ids RECEIVE, DEFER, SEND, DELIVER,
FAIL, DSN, POISONMESSAGE ...): every entry names the queue id, the Message-ID header, the
envelope sender and recipients, the client, the connector and the reply that decided it, so
``edgeward track`` can follow a message from receipt to delivery or bounce.

It is written for every accepted message, so an event is one dict and one ``write()``.

Security: only envelope data, replies and sizes are logged; never message content, AUTH data
or credentials.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from edgeward.config.schema import LoggingConfig
from edgeward.logs.rotating import LogWriter, iso_time, read_entries, utc_timestamp
from edgeward.metrics import count_message
from edgeward.ports import Clock
from edgeward.types import Finding

__all__ = ["TrackingEvent", "TrackingLog", "search"]

LOG_NAME = "tracking"
# The delivery process writes its own file (one writer per file, so rotation never races);
# search() reads both and merges them by time.
DELIVERY_LOG_NAME = "tracking-delivery"
# Administrators' commands (queue hold/release/remove, quarantine release/delete) write theirs.
ADMIN_LOG_NAME = "tracking-admin"


class TrackingEvent(enum.Enum):
    RECEIVE = "RECEIVE"  # accepted and queued
    DEFER = "DEFER"  # an attempt failed temporarily
    SEND = "SEND"  # handed to the next hop
    DELIVER = "DELIVER"  # written to a local drop folder
    FAIL = "FAIL"  # a recipient failed permanently
    DSN = "DSN"  # a delivery status notification was generated
    EXPIRE = "EXPIRE"  # the message outlived the expiration time
    HOLD = "HOLD"  # held by an administrator
    RELEASE = "RELEASE"  # released from hold
    REMOVE = "REMOVE"  # removed by an administrator
    RETRY = "RETRY"  # made due now by an administrator
    EXPORT = "EXPORT"  # a copy taken out of quarantine by an administrator (the entry stays)
    POISON = "POISON"  # parked after crashing delivery too often
    DISCARD = "DISCARD"  # accepted, then dropped by an agent's decision
    QUARANTINE = "QUARANTINE"  # accepted into quarantine
    REJECT = "REJECT"  # refused during the SMTP transaction
    CORRUPT = "CORRUPT"  # an unreadable queue or quarantine entry was moved to corrupt/


_EVENTS = frozenset(e.value for e in TrackingEvent)


class TrackingLog(LogWriter):
    """Writes tracking events to ``<dir>/tracking.log`` (rotated per ``LoggingConfig``)."""

    def __init__(
        self, directory: Path, cfg: LoggingConfig, *, clock: Clock | None = None, name: str = LOG_NAME
    ) -> None:
        super().__init__(directory, cfg, clock=clock, name=name)

    def event(
        self,
        event: str | TrackingEvent,
        *,
        msg_id: str,
        message_id: str = "",
        sender: str = "",
        recipients: Iterable[str] = (),
        client_ip: str = "",
        connector: str = "",
        size: int = 0,
        reply: str = "",
        detail: str = "",
        next_hop: str = "",
        findings: Iterable[Finding] | None = None,
        decided_by: str = "",
    ) -> None:
        """One line; ``findings`` and ``decided_by`` explain a RECEIVE, QUARANTINE or REJECT
        (``edgeward track why``) and are written only for events that carry a verdict."""
        name = event.value if isinstance(event, TrackingEvent) else event
        if name not in _EVENTS:
            raise ValueError(f"unknown tracking event {name!r}")
        count_message(name)
        entry: dict[str, object] = {
            "time": iso_time(self._clock.now()),
            "event": name,
            "msg_id": msg_id,
            "message_id": message_id,
            "sender": sender,
            "recipients": list(recipients),
            "client_ip": client_ip,
            "connector": connector,
            "size": size,
            "reply": reply,
            "detail": detail,
            "next_hop": next_hop,
        }
        if findings is not None:
            entry["findings"] = [f.to_dict() for f in findings]
            entry["decided_by"] = decided_by
        self._log.write(entry)


def search(
    directory: Path,
    *,
    sender: str | None = None,
    recipient: str | None = None,
    message_id: str | None = None,
    msg_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    event: str | TrackingEvent | None = None,
    name: str | tuple[str, ...] = (LOG_NAME, DELIVERY_LOG_NAME, ADMIN_LOG_NAME),
) -> Iterator[dict[str, Any]]:
    """Entries of the current and rotated tracking files matching every criterion given, in order.

    Addresses match case-insensitively (the domain is case-insensitive and most local parts
    are treated so in practice); ``since``/``until`` are inclusive; naive datetimes are UTC.
    """
    sender_l = sender.lower() if sender is not None else None
    recipient_l = recipient.lower() if recipient is not None else None
    event_v = (event.value if isinstance(event, TrackingEvent) else event.upper()) if event else None
    wanted_mid = _strip_brackets(message_id) if message_id is not None else None
    since_ts = utc_timestamp(since) if since is not None else None
    since_s = iso_time(since_ts) if since_ts is not None else None
    until_s = iso_time(utc_timestamp(until)) if until is not None else None
    names = (name,) if isinstance(name, str) else name
    streams = [read_entries(directory, n, since=since_ts) for n in names]
    entries = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda e: str(e.get("time", "")))
    for entry in entries:
        when = str(entry.get("time", ""))
        # Same format throughout, so the ISO strings compare as the times do.
        if (since_s is not None and when < since_s) or (until_s is not None and when > until_s):
            continue
        if event_v is not None and entry.get("event") != event_v:
            continue
        if msg_id is not None and entry.get("msg_id") != msg_id:
            continue
        if wanted_mid is not None and _strip_brackets(str(entry.get("message_id", ""))) != wanted_mid:
            continue
        if sender_l is not None and str(entry.get("sender", "")).lower() != sender_l:
            continue
        if recipient_l is not None and recipient_l not in (
            str(r).lower() for r in entry.get("recipients") or ()
        ):
            continue
        yield entry


def _strip_brackets(value: str) -> str:
    return value.strip().removeprefix("<").removesuffix(">")
