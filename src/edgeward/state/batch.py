"""Group commit for a :class:`~edgeward.state.sqlite.StateStore`: the calls that arrive while a
transaction runs share the next one.

Twenty sessions each asking for one counter would otherwise pay twenty trips to the worker
thread and twenty ``BEGIN IMMEDIATE``/``COMMIT`` pairs. Here the first call starts a drain task;
calls made while its batch is in the worker thread wait and go together in the next batch, one
thread hop and one transaction for all of them (at most ``max_batch``, so the write lock is held
briefly and other processes are not starved). Each writing call runs inside its own ``SAVEPOINT``,
so one that raises (a caller's ``ValueError``) is undone alone and the others still commit; a fault of
the database itself (``sqlite3.Error``) fails the whole batch, as it would have failed each call.
A call's result is given only after the batch has committed.

A caller that is cancelled stops waiting, but its call, once queued, still runs, as a command
already sent to a server does.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from edgeward.state.sqlite import StateStore

__all__ = ["BatchRunner"]

T = TypeVar("T")

Work = Callable[[sqlite3.Connection], Any]


@dataclass(slots=True)
class _Call:
    fn: Work
    write: bool
    future: asyncio.Future[Any] = field(repr=False)


class BatchRunner:
    """Runs ``fn(conn)`` calls on ``db`` in shared transactions; ``before`` runs in the worker
    thread ahead of each batch (to reconnect a store whose file could not be opened)."""

    def __init__(
        self, db: StateStore, *, before: Callable[[], None] = lambda: None, max_batch: int = 128
    ) -> None:
        self._db = db
        self._before = before
        self._max_batch = max_batch
        self._pending: list[_Call] = []
        self._drain: asyncio.Task[None] | None = None

    async def call(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """``fn(conn)`` in a transaction shared with the calls queued beside it; its result."""
        loop = asyncio.get_running_loop()
        call = _Call(fn, write, loop.create_future())
        # A caller cancelled while its call runs never reads the outcome; mark it read so a
        # failure is not reported again as "exception was never retrieved".
        call.future.add_done_callback(_consume)
        self._pending.append(call)
        if self._drain is None or self._drain.done():
            self._drain = loop.create_task(self._run_pending())
        result: T = await asyncio.shield(call.future)
        return result

    async def wait_idle(self) -> None:
        """Return once every queued call has run (before the database is closed)."""
        if self._drain is not None:
            await asyncio.shield(self._drain)

    async def _run_pending(self) -> None:
        # run_in_executor, not to_thread: no copy of the context and no second lookup of the
        # running loop (a getpid system call each on Python 3.11) per batch.
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                outcomes = await loop.run_in_executor(None, self._run_batch, batch)
            except asyncio.CancelledError:  # the loop is shutting down: nobody will wait
                for call in batch + self._pending:
                    call.future.cancel()
                self._pending = []
                raise
            except Exception as exc:  # the database failed: every call in the batch fails
                for call in batch:
                    if not call.future.done():
                        call.future.set_exception(exc)
                continue
            for call, (ok, value) in zip(batch, outcomes, strict=True):
                if call.future.done():
                    continue
                if ok:
                    call.future.set_result(value)
                else:
                    call.future.set_exception(value)

    def _run_batch(self, batch: list[_Call]) -> list[tuple[bool, Any]]:
        self._before()
        outcomes: list[tuple[bool, Any]] = []

        def body(conn: sqlite3.Connection) -> None:
            for call in batch:
                # A read changes nothing: no savepoint to pay for (two statements a call).
                if call.write:
                    conn.execute("SAVEPOINT call")
                try:
                    value = call.fn(conn)
                except sqlite3.Error:
                    raise
                except Exception as exc:
                    if call.write:
                        conn.execute("ROLLBACK TO call")
                        conn.execute("RELEASE call")
                    outcomes.append((False, exc))
                else:
                    if call.write:
                        conn.execute("RELEASE call")
                    outcomes.append((True, value))

        self._db.run(body, write=any(call.write for call in batch))
        return outcomes


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
