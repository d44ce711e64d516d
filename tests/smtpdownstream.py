"""An aiosmtpd downstream that closes its connections before its thread's event loop ends.

aiosmtpd's ``Controller.stop()`` stops and closes its loop without waiting for the sockets of
connections that were just closing: a session that ended in a STARTTLS connection closes its
plain transport from ``connection_lost``, which needs one more turn of the loop. The transport
then stays half-closed until the garbage collector finds it, and its ResourceWarning is raised
inside whatever test happens to run then (the suite turns warnings into errors). This
controller aborts every connection's socket transport on its own loop and waits until the
sockets are closed before it lets aiosmtpd stop.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

__all__ = ["ClosingController"]

_CLOSE_TURNS = 200  # turns of the loop to wait for the sockets: a plain close takes one


class ClosingController(Controller):
    """``aiosmtpd.controller.Controller`` that leaves no socket behind when stopped."""

    def __init__(self, handler: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(handler, *args, **kwargs)
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def factory(self) -> SMTP:
        smtp = super().factory()
        self._sessions.add(smtp)
        return smtp

    def stop(self, no_assert: bool = False) -> None:
        if self._thread is not None and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self._close_all(), self.loop).result(timeout=10)
        super().stop(no_assert)

    async def _close_all(self) -> None:
        # The socket transport is the original one of a STARTTLS session, else the current one.
        transports = [
            t
            for smtp in list(self._sessions)
            if (t := getattr(smtp, "_original_transport", None) or smtp.transport) is not None
        ]
        for transport in transports:
            transport.abort()  # type: ignore[attr-defined]
        for _ in range(_CLOSE_TURNS):
            if all(_closed(t) for t in transports):
                return
            await asyncio.sleep(0)


def _closed(transport: asyncio.BaseTransport) -> bool:
    sock = transport.get_extra_info("socket")
    return sock is None or sock.fileno() == -1
