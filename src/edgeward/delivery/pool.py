"""Idle SMTP connections kept for the next message to the same host.

Opening a connection, greeting and negotiating TLS costs more than sending a small message; a
queue of mail for one next hop is sent over few connections instead (Exchange's
SmtpMaxMessagesPerConnection, 20 by default; Postfix's connection cache). A connection goes
back to the pool only after a transaction ended with a DATA reply, so the next MAIL starts a
clean transaction; it is closed after ``max_messages`` messages or ``idle_timeout`` seconds idle.
:func:`quit_session` and :func:`close_session` end a session so that its socket is really gone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiosmtplib

from edgeward.ports import Clock, SystemClock

# Host name, address, port, TLS attempted, and the TLS level the session was secured to.
PoolKey = tuple[str, str, int, bool, str]

IDLE_TIMEOUT = 10.0  # well below the idle limits of common MTAs (Postfix 300 s, Exchange 60 s+)


@dataclass(slots=True)
class _Idle:
    smtp: aiosmtplib.SMTP
    sent: int
    since: float
    detail: str  # how the session was secured, for the tracking of the messages it carries


class ConnectionPool:
    def __init__(
        self, max_messages: int, idle_timeout: float = IDLE_TIMEOUT, *, clock: Clock | None = None
    ) -> None:
        self._clock = clock if clock is not None else SystemClock()
        self.max_messages = max_messages
        self.idle_timeout = idle_timeout
        self._idle: dict[PoolKey, list[_Idle]] = {}
        self._stale: list[aiosmtplib.SMTP] = []  # found dead by take(); expired() hands them out

    def take(self, key: PoolKey) -> tuple[aiosmtplib.SMTP, int, str] | None:
        """A connected session for ``key``, how many messages it carried and how it is secured."""
        stack = self._idle.get(key)
        now = self._clock.monotonic()
        while stack:
            entry = stack.pop()
            if entry.smtp.is_connected and now - entry.since < self.idle_timeout:
                return entry.smtp, entry.sent, entry.detail
            self._stale.append(entry.smtp)
        self._idle.pop(key, None)
        return None

    def give(self, key: PoolKey, smtp: aiosmtplib.SMTP, sent: int, detail: str = "") -> bool:
        """Keep ``smtp`` for reuse; False when it has carried enough (the caller closes it)."""
        if sent >= self.max_messages:
            return False
        self._idle.setdefault(key, []).append(_Idle(smtp, sent, self._clock.monotonic(), detail))
        return True

    def expired(self) -> Iterator[aiosmtplib.SMTP]:
        """Remove and yield the idle connections past ``idle_timeout`` (the caller closes them)."""
        now = self._clock.monotonic()
        while self._stale:
            yield self._stale.pop()
        for key in list(self._idle):
            keep = []
            for entry in self._idle[key]:
                if now - entry.since < self.idle_timeout and entry.smtp.is_connected:
                    keep.append(entry)
                else:
                    yield entry.smtp
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def drain(self) -> Iterator[aiosmtplib.SMTP]:
        yield from self._stale
        self._stale.clear()
        for stack in self._idle.values():
            for entry in stack:
                yield entry.smtp
        self._idle.clear()


async def quit_session(smtp: aiosmtplib.SMTP) -> None:
    transport = smtp.transport
    try:
        if smtp.is_connected:
            await smtp.quit(timeout=5.0)
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        await close_session(smtp, transport)


async def close_session(smtp: aiosmtplib.SMTP, transport: asyncio.BaseTransport | None = None) -> None:
    """Close the session and wait until its socket is really closed.

    Closing a TLS transport only starts the TLS shutdown: the socket closes once the peer's
    close_notify arrives. Waiting for it (briefly; then the transport is aborted) means a
    session is gone when its delivery ends, rather than whenever the peer answers, and a
    peer that never answers cannot hold a descriptor.
    """
    transport = transport or smtp.transport
    smtp.close()  # also when aiosmtplib already counts the session as gone
    if transport is None:
        return
    if not transport.is_closing():
        transport.close()
    sock = transport.get_extra_info("socket")
    deadline = time.monotonic() + _CLOSE_WAIT
    delay = 0.0  # a plain TCP transport closes on the next turn of the loop; TLS needs a reply
    while sock is not None and sock.fileno() != -1:
        if time.monotonic() >= deadline:
            transport.abort()  # type: ignore[attr-defined]
            return
        await asyncio.sleep(delay)
        delay = 0.005


_CLOSE_WAIT = 2.0
