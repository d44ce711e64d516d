"""What a verdict teaches, learned beside the commit and the reply rather than before them.

Sender reputation counts every message into its client's history: two trips to the policy
store (a worker thread and a write transaction each, or a Redis round trip). None of it can
change the message's own fate, so a client need not wait for it: ``Afterwards`` runs such
lessons as tasks of the receiving process, which overlap the spool's flush of the message and
its ``250``.

- **Order.** A lesson lags its message by at most the time of its own trips, so the next
  connection of the same client can be rated without the message before it; the reputation is
  a history over a window of hours, and one message more or less in it changes no rating.
- **Back-pressure.** At most ``limit`` lessons are pending; past that a session waits for its
  lesson as before, so a store slower than the mail slows the mail instead of piling up tasks.
- **Failure** of a lesson is logged by the listener or here, never raised into a session.
- **Stop.** ``drain`` waits for the pending lessons after the sessions (``runtime_receive``),
  before the policy store closes; one still running past the grace is cancelled and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["Afterwards"]

log = logging.getLogger("edgeward.policy")

# Lessons pending at once: about a second of mail at full rate, a few KB each.
PENDING_LIMIT = 1000


class Afterwards:
    """Runs lessons as tasks; one per receiving process, kept across reloads."""

    def __init__(self, limit: int = PENDING_LIMIT) -> None:
        self.limit = limit
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def submit(self, lesson: Coroutine[Any, Any, None]) -> None:
        """Start ``lesson``; return at once, or once it is done when ``limit`` are pending."""
        if len(self._pending) >= self.limit:
            await self._guarded(lesson)
            return
        task = asyncio.get_running_loop().create_task(self._guarded(lesson))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    @staticmethod
    async def _guarded(lesson: Coroutine[Any, Any, None]) -> None:
        try:
            await lesson
        except Exception:  # learning is a side effect: it must never surface in a session
            log.exception("learning from a verdict failed")

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the pending lessons; cancel what is left."""
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=grace)
        if late:
            log.error("%d lessons of verdicts not finished at stop; dropped", len(late))
            for task in late:
                task.cancel()
            await asyncio.wait(late)
