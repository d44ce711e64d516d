"""Quarantine retention: the loop that deletes quarantined messages older than the retention time.

Exchange keeps spam quarantine 30 days by default; ``agents.content_filter.quarantine_retention``
is ours (0 keeps everything). The receiving process runs :func:`run_retention` once at start
and every ``interval`` after, under the runtime's task supervisor. Each deleted entry is handed
to ``on_expired`` (the gateway writes an EXPIRE tracking event) and the round is logged, so
nothing leaves the quarantine unrecorded.

The retention time is read again each round, so a SIGHUP reload changes it without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from edgeward.ports import Clock, SystemClock
from edgeward.quarantine.store import QuarantineEntry, QuarantineStore

__all__ = ["RETENTION_CHECK_INTERVAL", "expire_once", "run_retention"]

log = logging.getLogger(__name__)

RETENTION_CHECK_INTERVAL = 3600.0


async def expire_once(
    store: QuarantineStore,
    retention: float,
    on_expired: Callable[[QuarantineEntry], None],
    clock: Clock | None = None,
) -> list[QuarantineEntry]:
    """Delete what is older than ``retention`` seconds (nothing if it is 0); return it."""
    if retention <= 0:
        return []
    now = (clock or SystemClock()).now()
    gone = await asyncio.to_thread(store.expire, now - retention)
    for entry in gone:
        on_expired(entry)
    if gone:
        log.info("quarantine retention deleted %d message(s) older than %.0fs", len(gone), retention)
    return gone


async def run_retention(
    store: QuarantineStore,
    retention: Callable[[], float],
    on_expired: Callable[[QuarantineEntry], None],
    *,
    interval: float = RETENTION_CHECK_INTERVAL,
    clock: Clock | None = None,
) -> None:
    """Expire old entries now and every ``interval`` seconds, until cancelled."""
    while True:
        try:
            await expire_once(store, retention(), on_expired, clock)
        except Exception:
            # One failed round (a folder briefly unreadable) must not stop the next ones.
            log.exception("quarantine retention failed; trying again in %.0fs", interval)
        await asyncio.sleep(interval)
