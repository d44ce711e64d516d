"""Child processes ``serve`` supervises besides the delivery process: the web console.

With ``[web] enabled``, ``serve`` binds the console's HTTPS socket while still root (with the
SMTP listeners), drops its privileges, and starts ``edgeward web --socket-fd N`` on that
socket: the console inherits the socket and the already dropped privileges, never root. It is
supervised the way the delivery process is (``supervisor``): started again after a pause if it
dies, SIGHUP passed on (the console reads its certificate again), SIGTERM passed on at once
and waited for within the grace period, then killed.

A console that cannot start (say, its certificate is unreadable) is restarted every
``RESTART_PAUSE`` seconds and each failure logged: the mail keeps flowing either way.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from edgeward.runtime import Gateway

__all__ = ["ConsoleProcess", "serve_with_console"]

log = logging.getLogger("edgeward.supervisor")

RESTART_PAUSE = 1.0


class ConsoleProcess:
    """``edgeward web`` as a child of ``serve``, on a socket ``serve`` bound."""

    def __init__(self, config_path: Path, sock: socket.socket) -> None:
        self.config_path = config_path
        self.sock = sock
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self._watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        fd = self.sock.fileno()
        command = ["web", "--config", str(self.config_path), "--socket-fd", str(fd)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeward", *command], pass_fds=(fd,), stdin=subprocess.DEVNULL
        )
        log.info("web console process %d started", self.proc.pid)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def supervise(self) -> None:
        """Start the child and watch it (in the running loop) until :meth:`stop`."""
        self.start()
        self._watch = asyncio.create_task(self._restart_when_dead(), name="console-watch")

    async def _restart_when_dead(self) -> None:
        while not self.stopping:
            await asyncio.sleep(0.5)
            if self.proc is not None and self.proc.poll() is not None and not self.stopping:
                log.error("web console process exited with %s; restarting", self.proc.returncode)
                await asyncio.sleep(RESTART_PAUSE)
                if not self.stopping:
                    try:
                        self.start()
                    except OSError as exc:
                        log.error("web console process could not be started: %s", exc)

    async def stop(self, grace: float) -> int:
        self.stopping = True
        if self._watch is not None:
            self._watch.cancel()
        self.signal(signal.SIGTERM)
        try:
            if self.proc is None:
                return 0
            try:
                return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout=grace + 10)
            except TimeoutError:
                log.error("web console process did not stop in time; killing it")
                self.proc.kill()
                return await asyncio.to_thread(self.proc.wait)
        finally:
            self.sock.close()


async def serve_with_console(
    gateway: Gateway, sockets: Sequence[socket.socket], console: ConsoleProcess, grace: float
) -> None:
    """One gateway process (``server.delivery_process = false``) with the console beside it."""
    console.supervise()
    stopped = asyncio.Event()

    async def stop_on_signal() -> int:
        await stopped.wait()  # set by the gateway on SIGTERM: the console stops while mail drains
        return await console.stop(grace)

    stopping = asyncio.create_task(stop_on_signal(), name="console-stop")
    try:
        await gateway.serve_until_signalled(
            sockets, on_reload=lambda: console.signal(signal.SIGHUP), stopped=stopped
        )
    finally:
        stopped.set()
        log.info("web console process stopped (%s)", await stopping)
