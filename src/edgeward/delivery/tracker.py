"""What the queue manager writes to the message tracking log about delivery.

This module owns the mapping from delivery results to tracking events: SEND (to an SMTP next
hop, with how the session was secured in ``detail``), DELIVER (into a drop folder), DEFER and
FAIL, one entry per distinct outcome so that a message to many recipients stays readable.

Security: a tracking write that fails (a full disk) is logged and swallowed; it must never stop
or repeat a delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from edgeward.delivery.results import Delivered, Failed, RecipientResult, reply_line
from edgeward.delivery.routing import Route
from edgeward.queue.model import MessageRecord, RecipientRecord

__all__ = ["DeliveryTracker", "Tracking"]

log = logging.getLogger(__name__)


class Tracking(Protocol):
    """The part of ``edgeward.logs.tracking.TrackingLog`` the manager writes to."""

    def event(
        self,
        event: str,
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
    ) -> None: ...


class DeliveryTracker:
    def __init__(self, tracking: Tracking) -> None:
        self._tracking = tracking

    def results(
        self,
        record: MessageRecord,
        route: Route,
        rcpts: Sequence[RecipientRecord],
        got: dict[str, RecipientResult],
    ) -> None:
        """One event per distinct (event, reply, detail) among the recipients of an attempt."""
        by_reply: dict[tuple[str, str, str], list[str]] = {}
        for rcpt in rcpts:
            result = got.get(rcpt.address)
            detail = ""
            if isinstance(result, Delivered):
                event = "DELIVER" if route.kind == "drop" else "SEND"
                detail = result.detail
            elif isinstance(result, Failed):
                event = "FAIL"
            else:
                event = "DEFER"
            reply = reply_line(result.reply) if result is not None else "no result"
            by_reply.setdefault((event, reply, detail), []).append(rcpt.address)
        for (event, reply, detail), addresses in by_reply.items():
            self.event(event, record, addresses, reply=reply, detail=detail, route=route)

    def event(
        self,
        event: str,
        record: MessageRecord,
        recipients: Sequence[str] = (),
        *,
        reply: str = "",
        detail: str = "",
        route: Route | None = None,
    ) -> None:
        try:
            self._tracking.event(
                event,
                msg_id=record.id,
                message_id=record.message_id,
                sender=record.mail_from,
                recipients=recipients,
                client_ip=record.client_ip,
                connector=route.connector.name if route else record.connector,
                size=record.size,
                reply=reply,
                detail=detail,
                next_hop=route.next_hop if route else "",
            )
        except Exception:
            # A full log disk must not stop delivery; the service log still says why.
            log.exception("tracking log write failed for %s", record.id)
