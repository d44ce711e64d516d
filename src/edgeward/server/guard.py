"""How long a session waits for its client, and how it is stopped from outside while it waits.

Every read a session makes goes through its ``ReadGuard``, which picks the time limit and ends
the session with a reply (``SessionEnd``) instead of letting a wait run on:

- between commands, the connector's ``idle_timeout``; in DATA/BDAT, ``data_timeout``; under
  stress (the connector nearly full) both shrink to ``stress_idle_timeout``, as Postfix's
  stress mode does (``421 4.4.2``);
- in DATA/BDAT, a minimum average data rate (Postfix's ``smtpd_min_data_rate`` idea): after
  ``min_data_rate_grace`` seconds, a client whose bytes since the start of the body, divided
  by the time since, fall below ``min_data_rate`` is cut with ``421 4.4.2``. That is a deadline,
  not a clock tick: with ``b`` bytes received the client is too slow from
  ``start + max(grace, b / rate)`` on, so each read simply waits no longer than that;
- junk commands (NOOP, RSET, VRFY, HELP: Postfix's ``smtpd_junk_command_limit``) are counted
  between messages; past ``max_junk_commands`` (under stress, ``stress_max_protocol_errors``)
  the session is closed with ``421 4.7.0``, so a client cannot hold a slot by chattering;
- ``interrupt`` ends the session from outside (shutdown, eviction) with its reply. A session
  waiting between commands is woken at once; one in DATA/BDAT only when ``anytime`` is set,
  so a message on its way is given the chance to finish. A session busy with its own work
  (agents, the spool) is never interrupted there: it sees the reply at its next read.

Security: the interrupt cancels only the read it knows the session is blocked in, and takes
its cancellation back (``Task.uncancel``), so the session closes through its normal path and
no ``CancelledError`` escapes into the server's callback.

One timer per session: a session runs inside its ``connection_timeout`` (``within``), and each
read moves that one timer to the read's own limit and back, instead of arming a second
timer of its own. An idle session then holds one timer, not two: about 0.6 KiB of the 12 KiB an
idle session costs (``bench/memory_bench.py``, 10,000 idle sessions). A guard outside a session
(its tests) times its reads with a timer of its own.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.ports import Clock, SystemClock
from edgeward.types import Reply

IDLE_TIMEOUT = Reply(421, "4.4.2", "Idle timeout, closing connection")
DATA_TOO_SLOW = Reply(421, "4.4.2", "Data rate too low, closing connection")
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, closing transmission channel")
EVICTED = Reply(421, "4.7.0", "Server busy, closing idle connection")
TOO_MUCH_JUNK = Reply(421, "4.7.0", "Too many commands without mail, closing transmission channel")
SESSION_TOO_LONG = Reply(421, "4.4.2", "Connection time limit exceeded, closing connection")

_IN_DATA = frozenset({"DATA", "BDAT"})
_IN_TRANSACTION = frozenset({"MAIL", "RCPT", "DATA", "BDAT"})


class SessionSlot(Protocol):
    """What a guard asks of its session's slot (``server.stress.Slot``)."""

    def stressed(self) -> bool: ...

    def touch(self) -> None: ...


class SessionEnd(Exception):
    """The session must end now with ``reply``."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


class ReadGuard:
    """Times one session's reads and lets the listener end it (see the module docstring)."""

    def __init__(
        self,
        connector: ReceiveConnectorConfig,
        *,
        slot: SessionSlot | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.connector = connector
        # The listener's side: whether the connector is under stress, and "this session is idle
        # from now" (an object the listener holds anyway, not two closures per session).
        self._slot = slot
        self._clock = clock if clock is not None else SystemClock()
        self.waiting = False
        self.in_data = False
        self.in_transaction = False
        self.data_bytes = 0
        self._data_start: float | None = None
        self._end: Reply | None = None
        self._end_anytime = False
        self._task: asyncio.Task[object] | None = None
        self._interrupting = False
        self._junk = 0
        self._session: asyncio.Timeout | None = None

    def within(self, session: asyncio.Timeout) -> None:
        """Time the reads with the session's own timer (see the module docstring)."""
        self._session = session

    @property
    def ending(self) -> Reply | None:
        return self._end

    async def read(self, reader: asyncio.StreamReader, state: str) -> bytes:
        """Up to 64 KiB from the client; ``state`` is the SMTP core's state name."""
        now = self._clock.monotonic()
        self.in_data = state in _IN_DATA
        self.in_transaction = state in _IN_TRANSACTION
        if not self.in_data:
            self._data_start = None
        elif self._data_start is None:
            self._data_start, self.data_bytes, self._junk = now, 0, 0
        if self._end is not None and (self._end_anytime or not self.in_data):
            raise SessionEnd(self._end)
        limit, too_slow = self._limit(now)
        if limit <= 0:
            raise SessionEnd(DATA_TOO_SLOW if too_slow else IDLE_TIMEOUT)
        self._task = asyncio.current_task()
        self.waiting = True
        if self._slot is not None:
            self._slot.touch()
        expiry = DATA_TOO_SLOW if too_slow else IDLE_TIMEOUT
        session = self._session
        try:
            if session is None:
                async with asyncio.timeout(limit):
                    data = await reader.read(65536)
            else:
                session_when = session.when()
                read_when = asyncio.get_running_loop().time() + limit
                if session_when is not None and session_when <= read_when:
                    expiry = SESSION_TOO_LONG  # the session's limit comes first: left as it is
                    data = await reader.read(65536)
                else:
                    session.reschedule(read_when)
                    try:
                        data = await reader.read(65536)
                    finally:
                        if not session.expired():
                            session.reschedule(session_when)
        except TimeoutError:
            raise SessionEnd(expiry) from None
        except asyncio.CancelledError:
            if session is not None and session.expired() and not self._interrupting:
                # The session's timer, moved to this read's limit, ran out: the session ends
                # with the reply; the timer takes its cancellation back as the session leaves it.
                raise SessionEnd(expiry) from None
            if not self._interrupting or self._end is None:
                raise
            self._interrupting = False
            if self._task is not None:
                self._task.uncancel()
            raise SessionEnd(self._end) from None
        finally:
            self.waiting = False
        if self.in_data:
            self.data_bytes += len(data)
        return data

    def _limit(self, now: float) -> tuple[float, bool]:
        """Seconds this read may wait, and whether running out means "too slow"."""
        c = self.connector
        limit = c.data_timeout if self.in_data else c.idle_timeout
        if self._slot is not None and self._slot.stressed():
            limit = min(limit, c.stress_idle_timeout)
        if not self.in_data or c.min_data_rate <= 0 or self._data_start is None:
            return limit, False
        slow_at = self._data_start + max(c.min_data_rate_grace, self.data_bytes / c.min_data_rate)
        if slow_at - now < limit:
            return slow_at - now, True
        return limit, False

    def junk_command(self) -> bool:
        """Count one junk command; True when the session has sent too many."""
        self._junk += 1
        return self._junk > self.connector.max_junk_commands

    def interrupt(self, reply: Reply, *, anytime: bool = False) -> bool:
        """End the session with ``reply``; True when it was waiting and is woken now."""
        self._end, self._end_anytime = reply, anytime
        if self.waiting and (anytime or not self.in_data) and self._task is not None:
            if not self._interrupting:
                self._interrupting = True
                self._task.cancel()
            return True
        return False
