"""The composition root: turns a ``Config`` into a running gateway.

This is the only module that picks implementations (the file spool, the DNS resolver, the
SMTP delivery client) and wires them together. Everything below it receives its collaborators
as arguments, which is what lets tests assemble the same parts with fakes or real servers.
What only a receiving process needs (listeners, sessions, agents and their stores, and the
background loops beside them) is ``runtime_receive.ReceiveSide``, imported only by a gateway
that receives: the delivery process stays free of the agents' modules.

Lifecycle: ``Gateway.start`` recovers the spool, starts the queue manager and the listeners
(the background loops, queue manager, certificate upkeep, quarantine retention, signature
updates, the site-learning worker, the notifier and the quarantine growth watch, run under a
``TaskSupervisor`` that logs and restarts any that dies);
``reload`` (SIGHUP) re-reads the configuration and certificates for new sessions without
touching running ones; ``stop`` (SIGTERM) stops accepting, tells idle sessions ``421 4.3.2``,
lets messages on their way and deliveries finish within one grace period (the two drain in
parallel), and returns. Bindings are fixed at start: changing them
needs a restart, which ``reload`` reports.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edgeward.config.check import audit, errors
from edgeward.config.load import load_config
from edgeward.config.schema import Config
from edgeward.delivery.dispatch import Dispatcher
from edgeward.delivery.manager import QueueManager
from edgeward.delivery.routing import Router
from edgeward.errors import ConfigError
from edgeward.logs.tracking import DELIVERY_LOG_NAME, LOG_NAME, TrackingLog
from edgeward.net.dns import DnsResolver
from edgeward.paths import data_paths
from edgeward.queue.spool import Spool
from edgeward.tasks import TaskSupervisor

if TYPE_CHECKING:
    from edgeward.content.sitelearn import SiteLearner
    from edgeward.notify.notifier import Notifier
    from edgeward.runtime_receive import ReceiveSide
    from edgeward.server.listener import Listener
    from edgeward.server.shared_slots import SharedSlots
    from edgeward.state.stores import OwnedPolicyStore

log = logging.getLogger("edgeward.runtime")


class Gateway:
    """One running Edgeward: listeners, sessions, spool and queue manager."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        receive: bool = True,
        deliver: bool = True,
        notify: Callable[[str], None] | None = None,
        primary: bool = True,
        slots: SharedSlots | None = None,
    ) -> None:
        """``receive``: run listeners and sessions; ``deliver``: run the queue manager.

        A gateway that receives without delivering hands each queued id to ``notify`` (the
        supervisor's pipe to the delivery process). One of several receiving processes
        (``supervisor``) counts connection slots and held bytes in ``slots`` with the others,
        and runs the gateway-wide background loops only when ``primary``.
        """
        self.config = config
        self.config_path = config_path
        self.receive = receive
        self.deliver = deliver
        self.primary = primary
        paths = data_paths(config)
        self.paths = paths
        self.spool = Spool(
            paths["queue"], fsync=config.queue.fsync, poison_threshold=config.queue.poison_threshold
        )
        self.tracking = TrackingLog(
            paths["log"], config.logging, name=LOG_NAME if receive else DELIVERY_LOG_NAME
        )
        self.spool.on_corrupt = self._spool_corrupt
        self.dispatcher = self._new_dispatcher(config)
        self._background: set[asyncio.Task[None]] = set()
        self.manager = QueueManager(
            self.spool, Router(config.send_connectors, config.accepted_domains), config, self.tracking,
            deliver=self.dispatcher,
        )  # fmt: skip
        self._notify = self.manager.arrived if deliver else (notify or (lambda _msg_id: None))
        self.tasks = TaskSupervisor()
        self._stopped = asyncio.Event()
        self.receiving: ReceiveSide | None = None
        if receive:
            # Imported here, not above: the delivery process never loads the agents, the content
            # model and the scanners (bench/README.md: about 55 MB of its memory).
            from edgeward.runtime_receive import ReceiveSide

            self.receiving = ReceiveSide(
                config, spool=self.spool, tracking=self.tracking, paths=paths, tasks=self.tasks,
                notify=self._notify, slots=slots,
            )  # fmt: skip

    # What tests and the supervisor reach through the gateway; None in a delivery-only one.
    @property
    def listener(self) -> Listener:
        assert self.receiving is not None, "a delivery-only gateway has no listener"
        return self.receiving.listener

    @property
    def policy_store(self) -> OwnedPolicyStore | None:
        return self.receiving.policy_store if self.receiving is not None else None

    @property
    def learner(self) -> SiteLearner | None:
        return self.receiving.learner if self.receiving is not None else None

    @property
    def notifier(self) -> Notifier | None:
        return self.receiving.notifier if self.receiving is not None else None

    @property
    def on_certificates_renewed(self) -> Callable[[], None]:
        return self.receiving.on_certificates_renewed if self.receiving is not None else lambda: None

    @on_certificates_renewed.setter
    def on_certificates_renewed(self, callback: Callable[[], None]) -> None:
        if self.receiving is not None:
            self.receiving.on_certificates_renewed = callback

    @staticmethod
    def _new_dispatcher(config: Config) -> Dispatcher:
        resolver = None
        if any(c.dns_routing for c in config.send_connectors):
            dns = config.dns
            resolver = DnsResolver(dns.servers or None, port=dns.port, timeout=dns.timeout)
        return Dispatcher(config, resolver)

    def _spool_corrupt(self, msg_id: str, reason: str) -> None:
        self.tracking.event("CORRUPT", msg_id=msg_id, detail=f"queue {reason}")

    async def start(self, sockets: Sequence[socket.socket], *, recover: bool = True) -> None:
        """Start; ``recover`` repairs the spool first (the whole of it, or when this gateway
        only delivers, the messages a previous delivery process left in ACTIVE)."""
        if recover:
            report = self.spool.recover(active_only=not self.receive)
            log.info("spool recovered: %s", report)
        if self.deliver:
            self.tasks.start("queue-manager", self.manager.run)
        if self.receiving is not None:
            await self.receiving.start(sockets, primary=self.primary)
        log.info("Edgeward %s started (%s)", self.config.server.hostname, self.role)

    @property
    def role(self) -> str:
        return (
            "receive and deliver"
            if self.receive and self.deliver
            else ("receive" if self.receive else "deliver")
        )

    def reload(self) -> None:
        """Re-read configuration and certificates; new sessions use them."""
        if self.config_path is None:
            return
        try:
            config = load_config(self.config_path)
            if unsafe := errors(audit(config)):
                raise ConfigError("; ".join(map(str, unsafe)))  # what serve refuses at start
            env = self.receiving.build_env(config) if self.receiving is not None else None
        except Exception as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        old = {b for c in self.config.receive_connectors for b in c.bindings}
        new = {b for c in config.receive_connectors for b in c.bindings}
        if old != new:
            log.warning("listener bindings changed; they take effect at the next restart")
        if config.policy_store != self.config.policy_store:
            # Sessions hold the open store; switching it under them would split their counters.
            log.warning("[policy_store] changed; it takes effect at the next restart")
        if self.receiving is not None and env is not None:
            self.receiving.reloaded(config, env)
        self.config = config
        if self.deliver:
            old_dispatcher, self.dispatcher = self.dispatcher, self._new_dispatcher(config)
            self.manager.reconfigure(
                Router(config.send_connectors, config.accepted_domains), config, self.dispatcher
            )
            self._background.add(asyncio.get_running_loop().create_task(old_dispatcher.close()))
        log.info("configuration reloaded")

    async def stop(self) -> None:
        grace = self.config.server.shutdown_grace
        self.tasks.retire()
        receiving = self.receiving
        if receiving is not None:
            await receiving.stop_accepting()
        # Receiving and delivering drain side by side, so a stop takes one grace period, not two.
        await asyncio.gather(receiving.drain(grace) if receiving is not None else asyncio.sleep(0),
                             self._stop_delivery(grace))  # fmt: skip
        await self.tasks.cancel()
        if receiving is not None:
            await receiving.close()
        await self.dispatcher.close()
        self.tracking.close()
        self._stopped.set()

    async def _stop_delivery(self, grace: float) -> None:
        await self.manager.stop(grace)
        if not await self.tasks.wait("queue-manager", grace + 5):
            log.error("the queue manager did not stop within the grace period; cancelling it")

    async def serve_until_signalled(
        self,
        sockets: Sequence[socket.socket],
        *,
        recover: bool = True,
        on_reload: Callable[[], None] | None = None,
        stopped: asyncio.Event | None = None,
    ) -> None:
        """Run until SIGTERM/SIGINT (or ``stopped`` is set); SIGHUP reloads, then ``on_reload``."""
        loop = asyncio.get_running_loop()
        stop = stopped or asyncio.Event()

        def reload() -> None:
            self.reload()
            if on_reload is not None:
                on_reload()

        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload)
        await self.start(sockets, recover=recover)
        freeze_start_up()
        await stop.wait()
        log.info("stopping: draining sessions and deliveries")
        await self.stop()


def freeze_start_up() -> None:
    """Take what start-up built out of the garbage collector's walks.

    The configuration, the spam model's tables, the public suffix list and the compiled rules
    live as long as the process. Every full collection walked them all: about 40 ms each, every
    few hundred messages, in the middle of whichever session allocated at that moment. Frozen,
    they are never walked again; what the sessions allocate is collected as before.
    """
    gc.collect()
    gc.freeze()
