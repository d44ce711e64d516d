"""Two processes: one receives (listeners and sessions), one delivers (the queue manager).

Receiving and delivering each keep a core busy under load; in one Python process they would
share one. The receiving process supervises the delivery process, which it starts as
``edgeward serve --role deliver`` with the same configuration and the same (already dropped)
privileges:

- each queued id is written to a pipe the delivery process reads, so fresh mail goes out at
  once; a full pipe loses nothing, as the delivery process also scans the spool periodically;
- a delivery process that dies is started again after a pause; the new one puts the messages
  the dead one held in ``active/`` back in the queue (poison counting applies);
- SIGHUP is passed on; SIGTERM is passed on at once, so sessions here and deliveries there
  drain side by side within one grace period; messages accepted meanwhile stay in the spool
  for the next start.

Security: the delivery process inherits no listening socket and no privilege; the pipe carries
only queue ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from edgeward.children import ConsoleProcess
from edgeward.config.schema import Config
from edgeward.runtime import Gateway

log = logging.getLogger("edgeward.supervisor")

RESTART_PAUSE = 1.0


class DeliveryProcess:
    """The child that runs the queue manager."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self._read_fd = read_fd
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeward", "serve", "--config", str(self.config_path),
             "--role", "deliver", "--notify-fd", str(self._read_fd)],
            pass_fds=(self._read_fd,), stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.info("delivery process %d started", self.proc.pid)

    def notify(self, msg_id: str) -> None:
        # Never block a session on the pipe: if it is full the periodic scan finds the message.
        # Sessions still finish messages while the child stops (the two drain in parallel);
        # their ids are not needed, the spool keeps the messages for the next start.
        if self.stopping:
            return
        with contextlib.suppress(OSError):
            os.write(self.write_fd, msg_id.encode("ascii", "replace") + b"\n")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def watch(self) -> None:
        """Restart the child whenever it dies, until ``stopping``."""
        while not self.stopping:
            await asyncio.sleep(0.5)
            if self.proc is not None and self.proc.poll() is not None and not self.stopping:
                log.error("delivery process exited with %s; restarting", self.proc.returncode)
                await asyncio.sleep(RESTART_PAUSE)
                if not self.stopping:
                    self.start()

    async def stop(self, grace: float) -> int:
        self.stopping = True
        if self.proc is None:
            return 0
        self.signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout=grace + 10)
        except TimeoutError:
            log.error("delivery process did not stop in time; killing it")
            self.proc.kill()
            return await asyncio.to_thread(self.proc.wait)
        finally:
            for fd in (self.write_fd, self._read_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)


async def serve_split(
    config: Config,
    config_path: Path,
    sockets: Sequence[socket.socket],
    console: ConsoleProcess | None = None,
) -> None:
    """Receive here, deliver in a child process (and the web console in another, when given);
    return after SIGTERM and a full drain."""
    child = DeliveryProcess(config_path)
    gateway = Gateway(config, config_path=config_path, deliver=False, notify=child.notify)
    gateway.spool.recover()  # once, before either process touches the spool
    child.start()
    watcher = asyncio.create_task(child.watch(), name="delivery-watch")
    if console is not None:
        console.supervise()
    stopped = asyncio.Event()

    async def stop_child_on_signal() -> int:
        await stopped.wait()
        grace = config.server.shutdown_grace
        if console is None:
            return await child.stop(grace)
        rc, console_rc = await asyncio.gather(child.stop(grace), console.stop(grace))
        log.info("web console process stopped (%s)", console_rc)
        return rc

    def reload() -> None:
        child.signal(signal.SIGHUP)
        if console is not None:
            console.signal(signal.SIGHUP)

    child_stop = asyncio.create_task(stop_child_on_signal(), name="delivery-stop")
    try:
        await gateway.serve_until_signalled(sockets, recover=False, on_reload=reload, stopped=stopped)
    finally:
        stopped.set()
        rc = await child_stop
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        log.info("delivery process stopped (%s)", rc)


async def serve_delivery(config: Config, config_path: Path, notify_fd: int) -> None:
    """The child's side: run the queue manager, woken by ids read from ``notify_fd``."""
    gateway = Gateway(config, config_path=config_path, receive=False)
    loop = asyncio.get_running_loop()
    reader = os.fdopen(notify_fd, "rb", buffering=0)
    os.set_blocking(notify_fd, False)

    def on_readable() -> None:
        try:
            chunk = reader.read(65536)
        except BlockingIOError:
            return
        if not chunk:  # the receiving process is gone: finish what is running and stop
            loop.remove_reader(notify_fd)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        for line in chunk.split(b"\n"):
            if line:
                gateway.manager.notify(line.decode("ascii", "replace"))

    loop.add_reader(notify_fd, on_readable)
    try:
        await gateway.serve_until_signalled((), recover=True)
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(notify_fd)
        reader.close()
