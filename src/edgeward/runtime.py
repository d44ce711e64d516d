"""The composition root: turns a ``Config`` into a running gateway.

This is the only module that picks implementations (the file spool, the DNS resolver, the
SMTP delivery client) and wires them together. Everything below it receives its collaborators
as arguments, which is what lets tests assemble the same parts with fakes or real servers.

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
import logging
import signal
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry

from edgeward.auth.addresses import AccountAddresses
from edgeward.auth.throttle import Throttle
from edgeward.auth.users import UserStore
from edgeward.config.check import audit, errors
from edgeward.config.load import load_config
from edgeward.config.quarantine import effective_retention
from edgeward.config.schema import Config
from edgeward.content.sitelearn import SiteLearner
from edgeward.delivery.dispatch import Dispatcher
from edgeward.delivery.manager import QueueManager
from edgeward.delivery.routing import Router
from edgeward.directory.push import build_listener
from edgeward.errors import ConfigError
from edgeward.filters.agents.antivirus import Antivirus
from edgeward.filters.agents.connection import IpLists
from edgeward.filters.base import Stage, StageContext
from edgeward.logs.agentlog import AgentLog
from edgeward.logs.protocol import ProtocolLog
from edgeward.logs.tracking import DELIVERY_LOG_NAME, LOG_NAME, TrackingLog
from edgeward.metrics import StateCollector, count_agent_outcome, counted
from edgeward.net.dns import DnsResolver
from edgeward.notify.build import build_notifier
from edgeward.notify.notifier import Notifier
from edgeward.ports import PolicyStoreError
from edgeward.quarantine.digest import run_digests
from edgeward.quarantine.growth import GrowthWatch, run_growth_watch
from edgeward.quarantine.retention import run_retention
from edgeward.quarantine.service import open_store
from edgeward.quarantine.store import QuarantineEntry, QuarantineStore
from edgeward.queue.model import QueueState
from edgeward.queue.spool import Spool
from edgeward.runtime_policy import build_agents as build_agents
from edgeward.runtime_policy import build_classifier as build_classifier
from edgeward.runtime_policy import build_learner as build_learner
from edgeward.runtime_policy import build_policy as build_policy
from edgeward.runtime_policy import content_state_path as content_state_path
from edgeward.runtime_policy import data_paths as data_paths
from edgeward.runtime_policy import directory_replica_path
from edgeward.scanning.hashlist import HashListEngine
from edgeward.scanning.updates import Reloadable, run_updates
from edgeward.scanning.yara_engine import YaraEngine
from edgeward.server.budget import ByteBudget
from edgeward.server.listener import ConnectorTable, Listener
from edgeward.server.metrics_http import MetricsListener
from edgeward.server.session import SessionEnv
from edgeward.server.shared_slots import SharedSlots
from edgeward.state.sqlite import DB_FILENAME, StateStore
from edgeward.state.stores import OwnedPolicyStore, policy_store_for
from edgeward.tasks import TaskSupervisor
from edgeward.tls.context import server_context
from edgeward.tls.store import CertificateStore
from edgeward.tls.upkeep import check_certificates
from edgeward.types import Outcome

log = logging.getLogger("edgeward.runtime")

CERTIFICATE_CHECK_INTERVAL = 12 * 3600.0
POLICY_PURGE_INTERVAL = 600.0
LEARNING_DRAIN = 5.0  # seconds a stop waits for queued lessons before dropping them


def tls_contexts(config: Config) -> dict[str, ssl.SSLContext]:
    """A server context per TLS connector: its own binding (or the smtp default), SNI by FQDN."""
    store = CertificateStore(config.resolve(config.tls.store))
    store.ensure_default(config.server.hostname)
    # SNI: a client naming one connector's FQDN gets that connector's certificate, whichever
    # listener it reached.
    sni = {c.fqdn: store.binding_for("smtp", c.name) for c in config.receive_connectors if c.fqdn and c.tls}
    contexts: dict[str, ssl.SSLContext] = {}
    for connector in config.receive_connectors:
        if not connector.tls:
            continue
        cert, key = store.binding_for("smtp", connector.name)
        client_ca = config.resolve(connector.client_ca) if connector.client_ca else None
        contexts[connector.name] = server_context(cert, key, sni=sni or None, client_ca=client_ca)
    return contexts


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
        self.on_certificates_renewed: Callable[[], None] = lambda: None
        paths = data_paths(config)
        self.paths = paths
        self.spool = Spool(
            paths["queue"], fsync=config.queue.fsync, poison_threshold=config.queue.poison_threshold
        )
        self.tracking = TrackingLog(
            paths["log"], config.logging, name=LOG_NAME if receive else DELIVERY_LOG_NAME
        )
        self.spool.on_corrupt = self._spool_corrupt
        self.agent_log = AgentLog(paths["log"], config.logging)
        self.dispatcher = self._new_dispatcher(config)
        self._background: set[asyncio.Task[None]] = set()
        self.manager = QueueManager(
            self.spool, Router(config.send_connectors, config.accepted_domains), config, self.tracking,
            deliver=self.dispatcher,
        )  # fmt: skip
        self._notify = self.manager.notify if deliver else (notify or (lambda _msg_id: None))
        self.listener = Listener(self._session_env, slots=slots)
        # One budget for the process, kept across reloads (a reload must not forget what is held),
        # counted with the other receiving processes when there are several.
        self.budget = ByteBudget(config.server.max_bytes_in_flight, slots)
        self._throttle_by_name: dict[str, Throttle] = {}
        # One ledger of failed AUTH per account for every connector: a limit per account that
        # each port counted apart would multiply with the ports that offer AUTH.
        self._account_failures = Throttle.shared_accounts(config.receive_connectors)
        self._protocol_logs: dict[str, ProtocolLog] = {}
        self.state: StateStore | None = None
        self.users: UserStore | None = None
        self.addresses: AccountAddresses | None = None
        if any(c.auth_mechanisms for c in config.receive_connectors):
            self.state = StateStore(paths["state"] / DB_FILENAME)
            problem = self.state.open_later()
            if problem is not None:
                # Only AUTH depends on it: the other connectors keep taking mail (AUTH answers
                # 454 4.7.0 until the file is repaired, which is picked up without a restart).
                log.error("AUTH is unavailable: %s", problem)
            self.users = UserStore(self.state)
            self.addresses = AccountAddresses(self.state)
        # Reputation, greylisting, rate counters and the IP lists; the CLI changes it live. The
        # SQLite file or, with [policy_store] backend = "redis", the server several gateways share.
        self.policy_store: OwnedPolicyStore | None = None
        self.ip_lists: IpLists | None = None
        if receive:
            self.policy_store = policy_store_for(config)
            self.ip_lists = IpLists(self.policy_store)
        # One learning worker for the process, kept across reloads like the byte budget.
        self.learner: SiteLearner | None = build_learner(config, self.policy_store) if receive else None
        # Notices are the receiving process's: the agents, the scan policy and the background
        # checks that emit events all run there. Fixed at start, like the listener bindings.
        self.notifier: Notifier | None = (
            build_notifier(config, self.spool.accept, self._notify) if receive else None
        )
        self._env: tuple[SessionEnv, ConnectorTable] | None = self._build_env(config) if receive else None
        self.tasks = TaskSupervisor()
        self._stopped = asyncio.Event()

    @staticmethod
    def _new_dispatcher(config: Config) -> Dispatcher:
        resolver = None
        if any(c.dns_routing for c in config.send_connectors):
            dns = config.dns
            resolver = DnsResolver(dns.servers or None, port=dns.port, timeout=dns.timeout)
        return Dispatcher(config, resolver)

    def _build_env(self, config: Config) -> tuple[SessionEnv, ConnectorTable]:
        agents = build_agents(
            config,
            self.spool,
            addresses=self.addresses,
            policy_store=self.policy_store,
            ip_lists=self.ip_lists,
            learner=self.learner,
            notifier=self.notifier,
        )
        allow_list = self.ip_lists.allowed_ip if self.ip_lists is not None else None
        policy = build_policy(
            config, agents, observer=self._observe, allow_list=allow_list, policy_store=self.policy_store
        )
        protocol_logs = {
            c.name: self._protocol_log(config, c.name) for c in config.receive_connectors if c.protocol_log
        }
        env = SessionEnv(
            hostname=config.server.hostname,
            policy=policy,
            spool=self.spool,
            tracking=self.tracking,
            tls_contexts=tls_contexts(config),
            handshake_timeout=config.tls.handshake_timeout,
            quarantine=self._quarantine_store(config),
            on_queued=self._notify,
            protocol_logs=protocol_logs,
            users=self.users,
            throttles=self._throttles(config),
            budget=self.budget,
        )
        self.budget.limit = config.server.max_bytes_in_flight
        return env, ConnectorTable(config.receive_connectors)

    def _quarantine_store(self, config: Config) -> QuarantineStore:
        return open_store(config, on_corrupt=self._quarantine_corrupt)

    def _spool_corrupt(self, msg_id: str, reason: str) -> None:
        self.tracking.event("CORRUPT", msg_id=msg_id, detail=f"queue {reason}")

    def _quarantine_corrupt(self, name: str, reason: str) -> None:
        self.tracking.event("CORRUPT", msg_id=name, detail=f"quarantine: {reason}")

    def _quarantine_expired(self, entry: QuarantineEntry) -> None:
        self.tracking.event(
            "EXPIRE", msg_id=entry.qid, sender=entry.mail_from, recipients=entry.recipients,
            client_ip=entry.client_ip, size=entry.size, detail="quarantine retention",
        )  # fmt: skip

    def _protocol_log(self, config: Config, connector: str) -> ProtocolLog:
        """One writer per connector's file, kept across reloads (sessions still running write to
        it) and closed at stop."""
        if connector not in self._protocol_logs:
            self._protocol_logs[connector] = ProtocolLog(self.paths["log"], config.logging, connector)
        return self._protocol_logs[connector]

    def _throttles(self, config: Config) -> dict[str, Throttle]:
        """One failed-AUTH throttle per connector (their account ledger shared), kept across reloads
        so a reload is no amnesty."""
        for c in config.receive_connectors:
            if c.name not in self._throttle_by_name:
                self._throttle_by_name[c.name] = Throttle.for_connector(c, self._account_failures)
        return self._throttle_by_name

    def _session_env(self) -> tuple[SessionEnv, ConnectorTable]:
        assert self._env is not None, "a delivery-only gateway has no sessions"
        return self._env

    def _observe(self, agent: str, stage: Stage, ctx: StageContext, outcome: Outcome) -> None:
        if not outcome.action.is_final and not outcome.findings:
            return
        count_agent_outcome(agent, outcome.action.value, tuple(f.name for f in outcome.findings))
        self.agent_log.record(
            session_id=ctx.session.session_id,
            client_ip=ctx.session.peer.ip,
            msg_id=ctx.msg_id,
            sender=str(ctx.mail_from) if ctx.mail_from else "",
            recipients=[str(ctx.recipient)] if ctx.recipient else [str(r) for r in ctx.recipients],
            agent=agent,
            stage=stage.value,
            action=outcome.action.value,
            reply=str(outcome.reply) if outcome.reply else "",
            findings=list(outcome.findings),
        )

    async def start(self, sockets: Sequence[socket.socket], *, recover: bool = True) -> None:
        """Start; ``recover`` repairs the spool first (the whole of it, or when this gateway
        only delivers, the messages a previous delivery process left in ACTIVE)."""
        if recover:
            report = self.spool.recover(active_only=not self.receive)
            log.info("spool recovered: %s", report)
        if self.deliver:
            self.tasks.start("queue-manager", self.manager.run)
        if self.receive:
            await self._open_policy_store()
            await self.listener.start(sockets)
            if self.learner is not None:
                self.tasks.start("site-learning", self.learner.run)
            self._start_notifier()
        if self.receive and self.primary:
            # Gateway-wide upkeep runs once, in the first receiving process.
            self.tasks.start("certificate-upkeep", self._certificate_upkeep)
            retention_store = self._quarantine_store(self.config)
            self.tasks.start(
                "quarantine-retention",
                lambda: run_retention(
                    retention_store,
                    lambda: effective_retention(self.config),
                    self._quarantine_expired,
                ),
            )
            self._start_signature_updates()
            self._start_growth_watch(retention_store)
            self._start_directory_push()
            self._start_metrics_listener()
            if self.config.quarantine.digest_enabled:
                self.tasks.start("quarantine-digest", lambda: run_digests(
                    lambda: self.config, self.spool.accept, self._notify
                ))  # fmt: skip
        log.info("Edgeward %s started (%s)", self.config.server.hostname, self.role)

    def _start_directory_push(self) -> None:
        """The EdgeSync push listener, where ``[directory] push_listen`` asks for it."""
        if not self.config.directory.push_listen:
            return
        listener = build_listener(self.config, directory_replica_path(self.config))
        self.tasks.start("directory-push", listener.serve)

    def _start_metrics_listener(self) -> None:
        """``[metrics] listen``: every process's counters and the state read at scrape time."""
        if not self.config.metrics.listen:
            return
        registry = CollectorRegistry(auto_describe=False)
        registry.register(counted())
        store = CertificateStore(self.config.resolve(self.config.tls.store))
        registry.register(StateCollector(
            lambda: {state.value: n for state, n in self.spool.counts().items()},
            (state.value for state in QueueState), self.spool.free_bytes,
            lambda: [(c.thumbprint, c.subject, c.days_until_expiry(time.time())) for c in store.list()],
        ))  # fmt: skip
        listener = MetricsListener(
            self.config.metrics.listen, registry, lambda: self.config.web.metrics_allow
        )
        self.tasks.start("metrics-listener", listener.serve)

    def _start_signature_updates(self) -> None:
        """freshclam every [antivirus.updates] interval, only where a mirror is set (without one,
        the host's own freshclam service is the usual updater and two would race)."""
        up = self.config.antivirus.updates
        if self.config.antivirus.enabled and up.mirror and up.interval > 0:
            self.tasks.start("signature-update", lambda: run_updates(
                lambda: self.config, self._scan_engines, notifier=self.notifier
            ))  # fmt: skip

    def _start_notifier(self) -> None:
        if self.notifier is not None:
            self.tasks.start("notifier", self.notifier.run)

    def _start_growth_watch(self, store: QuarantineStore) -> None:
        if self.notifier is None:
            return
        cfg = self.config.notify
        if cfg.quarantine_growth_threshold > 0:
            watch = GrowthWatch(store, self.notifier)
            self.tasks.start("quarantine-growth", lambda: run_growth_watch(
                watch, lambda: self.config.notify.quarantine_growth_threshold,
                lambda: self.config.notify.quarantine_check_interval,
            ))  # fmt: skip

    def _carry_engine_state(self, env: tuple[SessionEnv, ConnectorTable] | None) -> None:
        """The new scan policy learns which engines are down and paused, so a reload during an
        outage does not announce it again nor ask the frozen engine at once (and the engine's
        return is still announced)."""
        if env is None or self._env is None:
            return
        old = [a for a in self._env[0].policy.pipeline.agents if isinstance(a, Antivirus)]
        new = [a for a in env[0].policy.pipeline.agents if isinstance(a, Antivirus)]
        if old and new:
            new[0].policy.down.update(old[0].policy.down)
            new[0].policy.paused.update(old[0].policy.paused)

    def _scan_engines(self) -> list[Reloadable]:
        """The running engines with rules or lists of their own to reload (YARA, hash list)."""
        if self._env is None:
            return []
        agents = self._env[0].policy.pipeline.agents
        scanners = [e.scanner for a in agents if isinstance(a, Antivirus) for e in a.policy.engines]
        return [s for s in scanners if isinstance(s, (YaraEngine, HashListEngine))]

    async def _open_policy_store(self) -> None:
        """Open the policy store and start its upkeep; a store that cannot open is retried on
        each call (its agents give temperror findings meanwhile), so serve still starts."""
        if self.policy_store is None:
            return
        try:
            await self.policy_store.open()
        except PolicyStoreError as exc:
            log.error("policy store unavailable: %s", exc)
        if self.primary:
            self.tasks.start("policy-store-purge", self._purge_policy_store)
        self.tasks.start("ip-allow-list-refresh", self._refresh_ip_lists)

    async def _purge_policy_store(self) -> None:
        assert self.policy_store is not None
        while True:
            try:
                purged = await self.policy_store.purge_expired()
                if purged:
                    log.info("policy store: %d expired entries purged", purged)
            except PolicyStoreError as exc:
                log.warning("policy store purge failed: %s", exc)
            await asyncio.sleep(POLICY_PURGE_INTERVAL)

    async def _refresh_ip_lists(self) -> None:
        """Keep the allow list snapshot of the exemptions fresh: removals take effect this way."""
        assert self.ip_lists is not None
        while True:
            try:
                await self.ip_lists.refresh()
            except PolicyStoreError as exc:
                log.warning("IP allow list refresh failed, keeping the last one: %s", exc)
            await asyncio.sleep(self.config.connection_filter.list_refresh)

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
            env = self._build_env(config) if self.receive else None
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
        if config.notify != self.config.notify and self.receive:
            log.warning("[notify] changed; its channels take effect at the next restart")
        if config.metrics != self.config.metrics and self.receive:
            log.warning("[metrics] changed; its listener takes effect at the next restart")
        self._carry_engine_state(env)
        self.config = config
        self._env = env
        if self.deliver:
            old_dispatcher, self.dispatcher = self.dispatcher, self._new_dispatcher(config)
            self.manager.reconfigure(
                Router(config.send_connectors, config.accepted_domains), config, self.dispatcher
            )
            self._background.add(asyncio.get_running_loop().create_task(old_dispatcher.close()))
        log.info("configuration reloaded")

    async def _certificate_upkeep(self) -> None:
        """Renew due certificates and refresh the expiry metric twice a day; reload on renewal."""
        while True:
            store = CertificateStore(self.config.resolve(self.config.tls.store))
            try:
                report = await asyncio.to_thread(
                    check_certificates, store, self.paths["log"] / "metrics.prom"
                )
            except Exception:
                log.exception("certificate check failed")
            else:
                if report.renewed:
                    self._reload_tls()
                    self.on_certificates_renewed()
            await asyncio.sleep(CERTIFICATE_CHECK_INTERVAL)

    def _reload_tls(self) -> None:
        if self._env is None:
            return
        try:
            self._env = (replace(self._env[0], tls_contexts=tls_contexts(self.config)), self._env[1])
        except Exception:
            log.exception("could not load the renewed certificates; keeping the current ones")

    async def stop(self) -> None:
        grace = self.config.server.shutdown_grace
        self.tasks.retire()
        await self.tasks.cancel(
            "certificate-upkeep", "quarantine-retention", "policy-store-purge", "ip-allow-list-refresh",
            "signature-update", "quarantine-growth", "quarantine-digest", "directory-push",
            "metrics-listener",
        )  # fmt: skip
        if self.receive:
            await self.listener.stop_accepting()
        # Receiving and delivering drain side by side, so a stop takes one grace period, not two.
        await asyncio.gather(self.listener.drain(grace) if self.receive else asyncio.sleep(0),
                             self._stop_delivery(grace))  # fmt: skip
        if self.learner is not None:
            await self.learner.drain(LEARNING_DRAIN)  # lessons queued by the last sessions
        await self.tasks.cancel()
        if self.notifier is not None:
            await self.notifier.close()  # the last digests into the spool, sent at the next start
        if self.learner is not None:
            await self.learner.close()
        await self.dispatcher.close()
        self.tracking.close()
        self.agent_log.close()
        for plog in self._protocol_logs.values():
            plog.close()
        if self.state is not None:
            self.state.close()
        if self.policy_store is not None:
            await self.policy_store.close()
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
        await stop.wait()
        log.info("stopping: draining sessions and deliveries")
        await self.stop()
