"""Receiving processes (listeners and sessions) and one delivery process (the queue manager).

Receiving and delivering each keep a core busy under load; in one Python process they would
share one. The first receiving process supervises the delivery process, which it starts as
``edgeward serve --role deliver`` with the same configuration and the same (already dropped)
privileges:

- each queued id is written to a pipe the delivery process reads, so fresh mail goes out at
  once; a full pipe loses nothing, as the delivery process also scans the spool periodically;
- a delivery process that dies is started again after a pause; the new one puts the messages
  the dead one held in ``active/`` back in the queue (poison counting applies);
- SIGHUP is passed on; SIGTERM is passed on at once, so sessions here and deliveries there
  drain side by side within one grace period; messages accepted meanwhile stay in the spool
  for the next start.

With ``[server] receivers`` above one it also starts the other receiving processes
(``--role receive``), each with listening sockets of its own on the same bindings
(SO_REUSEPORT, bound as root before the drop: ``listener.bind_sockets``), so the kernel spreads
connections over the processes. What a receiving process held alone is settled so:

- connection slots and stress count over all of them (``server/shared_slots.py``), so every
  limit stays the gateway's; eviction picks an idle session of the process the newcomer reached;
- bindings of connectors that offer AUTH are served by the first process only: its failed-AUTH
  throttle (in memory) then still sees every attempt on an account;
- the byte budget counts over all of them too, so ``max_bytes_in_flight`` stays the gateway's;
- all of them write queued ids into the one pipe to the delivery process (a line is far below
  PIPE_BUF, so writes from several processes never interleave); each spools with its own group
  commit, which is safe as every message has files of its own;
- gateway-wide upkeep (certificates, quarantine retention and digests, signature updates, the
  policy-store purge, the directory push) runs in the first one only; renewed certificates are
  passed on as a SIGHUP;
- SIGHUP and SIGTERM are passed on to every child; a receiving process that dies is started
  again after a pause, its slots given back first; one whose supervisor dies is sent SIGTERM by
  the kernel (PR_SET_PDEATHSIG) and drains. Connections that reach its sockets meanwhile wait
  in their backlog.

Security: the delivery process inherits no listening socket and no privilege; the pipe carries
only queue ids. The other receiving processes get only their sockets, the write end of that
pipe and the slot table.
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
from collections.abc import Callable, Sequence
from pathlib import Path

from edgeward.children import ConsoleProcess
from edgeward.config.schema import Config
from edgeward.runtime import Gateway
from edgeward.server.shared_slots import SharedSlots

log = logging.getLogger("edgeward.supervisor")

RESTART_PAUSE = 1.0


class Child:
    """A child process started again whenever it dies (``watch``), until ``stop``."""

    what = "child"

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self._fds: tuple[int, ...] = ()

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def before_restart(self) -> None:
        """Undo what the dead process left behind, before its replacement starts."""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeward", "serve", "--config", str(self.config_path), *self.arguments()],
            pass_fds=self._fds, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.info("%s %d started", self.what, self.proc.pid)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def watch(self) -> None:
        """Restart the child whenever it dies, until ``stopping``."""
        while not self.stopping:
            await asyncio.sleep(0.5)
            if self.proc is not None and self.proc.poll() is not None and not self.stopping:
                log.error("%s exited with %s; restarting", self.what, self.proc.returncode)
                await asyncio.sleep(RESTART_PAUSE)
                if not self.stopping:
                    self.before_restart()
                    self.start()

    async def stop(self, grace: float) -> int:
        self.stopping = True
        if self.proc is None:
            return 0
        self.signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout=grace + 10)
        except TimeoutError:
            log.error("%s did not stop in time; killing it", self.what)
            self.proc.kill()
            return await asyncio.to_thread(self.proc.wait)


class ReceiverProcess(Child):
    """A receiving process beside the first: its sockets, the delivery pipe, the slot table."""

    what = "receiving process"

    def __init__(
        self, config_path: Path, index: int, slots: SharedSlots, slots_fd: int,
        sockets: Sequence[socket.socket], notify_fd: int,
    ) -> None:  # fmt: skip
        super().__init__(config_path)
        self.index = index
        self._slots = slots
        self._sockets = list(sockets)  # held open here, so a restarted child inherits them again
        self._listen = tuple(s.fileno() for s in sockets)
        self._notify_fd, self._slots_fd = notify_fd, slots_fd
        self._fds = (*self._listen, notify_fd, slots_fd)

    def arguments(self) -> list[str]:
        return [
            "--role", "receive", "--receiver", f"{self.index}/{self._slots.receivers}",
            "--listen-fds", ",".join(map(str, self._listen)), "--notify-fd", str(self._notify_fd),
            "--slots-fd", str(self._slots_fd),
        ]  # fmt: skip

    def before_restart(self) -> None:
        self._slots.clear(self.index)


class DeliveryProcess(Child):
    """The child that runs the queue manager."""

    what = "delivery process"

    def __init__(self, config_path: Path) -> None:
        super().__init__(config_path)
        read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self._read_fd = read_fd
        self._fds = (read_fd,)

    def arguments(self) -> list[str]:
        return ["--role", "deliver", "--notify-fd", str(self._read_fd)]

    def notify(self, msg_id: str) -> None:
        # Never block a session on the pipe: if it is full the periodic scan finds the message.
        # Sessions still finish messages while the child stops (the two drain in parallel);
        # their ids are not needed, the spool keeps the messages for the next start.
        if self.stopping:
            return
        with contextlib.suppress(OSError):
            os.write(self.write_fd, msg_id.encode("ascii", "replace") + b"\n")

    async def stop(self, grace: float) -> int:
        try:
            return await super().stop(grace)
        finally:
            for fd in (self.write_fd, self._read_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)


def pipe_writer(write_fd: int) -> Callable[[str], None]:
    """Queued ids into the delivery pipe, never blocking (a full pipe: the periodic scan finds
    the message)."""

    def notify(msg_id: str) -> None:
        with contextlib.suppress(OSError):
            os.write(write_fd, msg_id.encode("ascii", "replace") + b"\n")

    return notify


async def serve_split(
    config: Config,
    config_path: Path,
    sockets: Sequence[socket.socket],
    others: Sequence[Sequence[socket.socket]] = (),
    console: ConsoleProcess | None = None,
) -> None:
    """Receive here (and in one more process per entry of ``others``, the sockets it serves),
    deliver in a child process (and run the web console in another, when given); return after
    SIGTERM and a full drain of them all."""
    delivery = DeliveryProcess(config_path)
    slots: SharedSlots | None = None
    children: list[Child] = [delivery]
    if others:
        connections = sum(c.max_connections for c in config.receive_connectors)
        slots, slots_fd = SharedSlots.create(len(others) + 1, connections)
        children += [
            ReceiverProcess(config_path, i, slots, slots_fd, socks, delivery.write_fd)
            for i, socks in enumerate(others, 1)
        ]
    gateway = Gateway(
        config, config_path=config_path, deliver=False, notify=delivery.notify, slots=slots,
    )  # fmt: skip

    def reload_receivers() -> None:  # renewed certificates, for the other receiving processes
        for child in children[1:]:
            child.signal(signal.SIGHUP)

    gateway.on_certificates_renewed = reload_receivers
    gateway.spool.recover()  # once, before any other process touches the spool
    for child in children:
        child.start()
    watchers = [asyncio.create_task(c.watch(), name=f"{c.what}-watch") for c in children]
    if console is not None:
        console.supervise()
    stopped = asyncio.Event()

    async def stop_children_on_signal() -> list[int]:
        await stopped.wait()
        grace = config.server.shutdown_grace
        stops = [c.stop(grace) for c in children] + ([console.stop(grace)] if console is not None else [])
        return list(await asyncio.gather(*stops))

    children_stop = asyncio.create_task(stop_children_on_signal(), name="children-stop")

    def reload_children() -> None:
        for child in children:
            child.signal(signal.SIGHUP)
        if console is not None:
            console.signal(signal.SIGHUP)

    try:
        await gateway.serve_until_signalled(
            sockets, recover=False, on_reload=reload_children, stopped=stopped
        )
    finally:
        stopped.set()
        codes = await children_stop
        for watcher in watchers:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        log.info("children stopped (%s)", ", ".join(map(str, codes)))
        if slots is not None:
            slots.close()


async def serve_receiver(
    config: Config, config_path: Path, index: int, receivers: int, listen_fds: Sequence[int], notify_fd: int,
    slots_fd: int,
) -> None:  # fmt: skip
    """Another receiving process's side: sessions on the inherited sockets, queued ids into the
    delivery pipe; stops with its supervisor."""
    die_with_parent()
    sockets = [socket.socket(fileno=fd) for fd in listen_fds]
    os.set_blocking(notify_fd, False)
    slots = SharedSlots(slots_fd, receivers, index)
    gateway = Gateway(
        config, config_path=config_path, deliver=False, notify=pipe_writer(notify_fd), primary=False,
        slots=slots,
    )  # fmt: skip
    try:
        await gateway.serve_until_signalled(sockets, recover=False)
    finally:
        slots.close()


def die_with_parent() -> None:
    """SIGTERM this process when its parent dies (Linux PR_SET_PDEATHSIG); at once if it has."""
    import ctypes

    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


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
                gateway.manager.arrived(line.decode("ascii", "replace"))

    loop.add_reader(notify_fd, on_readable)
    try:
        await gateway.serve_until_signalled((), recover=True)
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(notify_fd)
        reader.close()
