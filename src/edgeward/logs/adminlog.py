"""Tracking events written by administrators' commands (queue hold/release/remove, quarantine).

The gateway's processes each write their own tracking file; these commands write
``tracking-admin.log`` in the same folder, which ``edgeward track`` merges with the others by
time, so a message's history shows who held, released or removed it. One line is written per
action and the file is closed at once: commands are short-lived and rarely run together.

Each action by someone (not ``CORRUPT`` or ``EXPIRE``, which the software notes by itself) is
also written to the audit log (``logs.audit``) with the actor the caller set.

Run as root while the gateway runs as its service user, the log folder and file are handed to
the owner of the log folder (``config.ownership``), so a later command run as that user can
still append and ``edgeward track`` can still read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from edgeward.config.ownership import hand_over, make_private_dirs, service_owner
from edgeward.config.schema import Config
from edgeward.logs.audit import audit
from edgeward.logs.tracking import ADMIN_LOG_NAME, TrackingLog
from edgeward.queue.model import MessageRecord

__all__ = ["track_admin", "track_record"]

log = logging.getLogger(__name__)
_NOT_BY_SOMEONE = frozenset({"CORRUPT", "EXPIRE"})


def track_admin(
    config: Config | None,
    event: str,
    *,
    msg_id: str,
    message_id: str = "",
    sender: str = "",
    recipients: Iterable[str] = (),
    client_ip: str = "",
    size: int = 0,
    detail: str = "",
) -> None:
    """Append one event to the administrators' tracking log; nothing without a configuration.

    A log that cannot be written is reported and does not undo the action already done.
    """
    if config is None:
        return
    recipients = tuple(recipients)
    folder = config.resolve(config.logging.dir)
    try:
        make_private_dirs(folder, owner=service_owner(folder))
        tracking = TrackingLog(folder, config.logging, name=ADMIN_LOG_NAME)
        try:
            tracking.event(
                event, msg_id=msg_id, message_id=message_id, sender=sender, recipients=recipients,
                client_ip=client_ip, size=size, detail=detail,
            )  # fmt: skip
        finally:
            tracking.close()
        hand_over(folder / f"{ADMIN_LOG_NAME}.log")
    except OSError as exc:
        log.warning("could not write the tracking event %s for %s: %s", event, msg_id, exc)
    if event not in _NOT_BY_SOMEONE:
        to = ", ".join(recipients)
        audit(
            config, f"message.{event.lower()}", target=msg_id, detail=f"{detail}; to {to}" if to else detail
        )


def track_record(config: Config | None, event: str, record: MessageRecord, detail: str = "") -> None:
    """:func:`track_admin` about a queued message, with the envelope its record holds."""
    track_admin(
        config, event, msg_id=record.id, message_id=record.message_id, sender=record.mail_from,
        recipients=[r.address for r in record.recipients], client_ip=record.client_ip,
        size=record.size, detail=detail,
    )  # fmt: skip
