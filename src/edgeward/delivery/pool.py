"""Idle SMTP connections kept for the next message to the same host.

Opening a connection, greeting and negotiating TLS costs more than sending a small message; a
queue of mail for one next hop is sent over few connections instead (Exchange's
SmtpMaxMessagesPerConnection, 20 by default; Postfix's connection cache). A connection goes
back to the pool only after a transaction ended with a DATA reply, so the next MAIL starts a
clean transaction; it is closed after ``max_messages`` messages or ``idle_timeout`` seconds idle.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import aiosmtplib

PoolKey = tuple[str, str, int, bool]  # host name, address, port, TLS attempted

IDLE_TIMEOUT = 10.0  # well below the idle limits of common MTAs (Postfix 300 s, Exchange 60 s+)


class ConnectionPool:
    def __init__(self, max_messages: int, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.max_messages = max_messages
        self.idle_timeout = idle_timeout
        self._idle: dict[PoolKey, list[tuple[aiosmtplib.SMTP, int, float]]] = {}

    def take(self, key: PoolKey) -> tuple[aiosmtplib.SMTP, int] | None:
        """A connected session for ``key`` and how many messages it carried, or None."""
        stack = self._idle.get(key)
        now = time.monotonic()
        while stack:
            smtp, sent, since = stack.pop()
            if smtp.is_connected and now - since < self.idle_timeout:
                return smtp, sent
            smtp.close()
        self._idle.pop(key, None)
        return None

    def give(self, key: PoolKey, smtp: aiosmtplib.SMTP, sent: int) -> bool:
        """Keep ``smtp`` for reuse; False when it has carried enough (the caller closes it)."""
        if sent >= self.max_messages:
            return False
        self._idle.setdefault(key, []).append((smtp, sent, time.monotonic()))
        return True

    def expired(self) -> Iterator[aiosmtplib.SMTP]:
        """Remove and yield the idle connections past ``idle_timeout`` (the caller closes them)."""
        now = time.monotonic()
        for key in list(self._idle):
            keep = []
            for entry in self._idle[key]:
                if now - entry[2] < self.idle_timeout and entry[0].is_connected:
                    keep.append(entry)
                else:
                    yield entry[0]
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def drain(self) -> Iterator[aiosmtplib.SMTP]:
        for stack in self._idle.values():
            for smtp, _, _ in stack:
                yield smtp
        self._idle.clear()
