"""The receiving side of a gateway: listeners, sessions, the agents and their stores.

``Gateway`` (``runtime``) builds a ``ReceiveSide`` only in a process that takes mail; the
delivery process never imports this module, and with it not the agents, the content model,
the scanners, the directory replica or the policy store's clients (about 55 MB of its resident
memory, ``bench/README.md``). Everything a receiving process runs beside its sessions is here
too: the policy store's upkeep, the site-learning worker, the notifier and, in the first
receiving process (``primary``), the gateway-wide loops (certificate renewal, quarantine
retention and digests, signature updates, the quarantine growth watch, the EdgeSync push
listener and the metrics listener).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from edgeward.auth.addresses import AccountAddresses
from edgeward.auth.throttle import Throttle
from edgeward.auth.users import UserStore
from edgeward.config.quarantine import effective_retention
from edgeward.config.schema import Config
from edgeward.content.sitelearn import SiteLearner
from edgeward.filters.afterwards import Afterwards
from edgeward.filters.agents.antivirus import Antivirus
from edgeward.filters.agents.connection import IpLists
from edgeward.filters.base import Stage, StageContext
from edgeward.logs.agentlog import AgentLog
from edgeward.logs.protocol import ProtocolLog
from edgeward.logs.tracking import TrackingLog
from edgeward.metrics import StateCollector, count_agent_outcome, counted
from edgeward.notify.build import build_notifier
from edgeward.notify.notifier import Notifier
from edgeward.paths import directory_replica_path
from edgeward.ports import PolicyStoreError
from edgeward.quarantine.digest import run_digests
from edgeward.quarantine.growth import GrowthWatch, run_growth_watch
from edgeward.quarantine.retention import run_retention
from edgeward.quarantine.service import open_store
from edgeward.quarantine.store import QuarantineEntry, QuarantineStore
from edgeward.queue.model import QueueState
from edgeward.queue.spool import Spool
from edgeward.runtime_policy import (
    build_agents,
    build_learner,
    build_policy,
    build_scoring_workers,
    configure_scoring_workers,
)
from edgeward.scanning.hashlist import HashListEngine
from edgeward.scanning.updates import Reloadable, run_updates
from edgeward.scanning.yara_engine import YaraEngine
from edgeward.server.budget import ByteBudget
from edgeward.server.listener import ConnectorTable, Listener
from edgeward.server.metrics_http import MetricsListener
from edgeward.server.session import SessionEnv
from edgeward.server.shared_slots import SharedSlots
from edgeward.state.sqlite import DB_FILENAME, StateStore
from edgeward.state.stores import policy_store_for
from edgeward.tasks import TaskSupervisor
from edgeward.tls.context import server_context
from edgeward.tls.store import CertificateStore
from edgeward.tls.upkeep import check_certificates
from edgeward.types import Outcome

if TYPE_CHECKING:
    from edgeward.state.stores import OwnedPolicyStore

__all__ = ["ReceiveSide", "tls_contexts"]

log = logging.getLogger("edgeward.runtime")

CERTIFICATE_CHECK_INTERVAL = 12 * 3600.0
POLICY_PURGE_INTERVAL = 600.0
LEARNING_DRAIN = 5.0  # seconds a stop waits for queued lessons before dropping them
# The loops a stop cancels first, before sessions drain (``stop_accepting``).
UPKEEP_TASKS = (
    "certificate-upkeep", "quarantine-retention", "policy-store-purge", "ip-allow-list-refresh",
    "signature-update", "quarantine-growth", "quarantine-digest", "directory-push", "metrics-listener",
)  # fmt: skip

Env = tuple[SessionEnv, ConnectorTable]


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


class ReceiveSide:
    """What one receiving process runs: its listener, the session environment and their stores.

    ``notify`` hands each queued id to the delivery side (the queue manager in this process, or
    the pipe to the delivery process).
    """

    def __init__(
        self,
        config: Config,
        *,
        spool: Spool,
        tracking: TrackingLog,
        paths: dict[str, Path],
        tasks: TaskSupervisor,
        notify: Callable[[str], None],
        slots: SharedSlots | None,
    ) -> None:
        self.config = config
        self.spool = spool
        self.tracking = tracking
        self.paths = paths
        self.tasks = tasks
        self.notify = notify
        self.on_certificates_renewed: Callable[[], None] = lambda: None
        self.agent_log = AgentLog(paths["log"], config.logging)
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
        self.policy_store: OwnedPolicyStore = policy_store_for(config)
        self.ip_lists = IpLists(self.policy_store)
        # One learning worker for the process, kept across reloads like the byte budget.
        self.learner: SiteLearner = build_learner(config, self.policy_store)
        # The content filter's scoring workers, kept across reloads like the learner.
        self.scoring_workers = build_scoring_workers(config)
        # Sender reputation's counting after the reply, kept across reloads like the learner.
        self.afterwards = Afterwards()
        # Notices are the receiving process's: the agents, the scan policy and the background
        # checks that emit events all run there. Fixed at start, like the listener bindings.
        self.notifier: Notifier | None = build_notifier(config, spool.accept, notify)
        self.env: Env = self.build_env(config)

    # -- the session environment ---------------------------------------------------------

    def build_env(self, config: Config) -> Env:
        agents = build_agents(
            config,
            self.spool,
            addresses=self.addresses,
            policy_store=self.policy_store,
            ip_lists=self.ip_lists,
            learner=self.learner,
            notifier=self.notifier,
            scoring_workers=self.scoring_workers,
            afterwards=self.afterwards,
        )
        policy = build_policy(
            config, agents, observer=self._observe, allow_list=self.ip_lists.allowed_ip,
            policy_store=self.policy_store,
        )  # fmt: skip
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
            on_queued=self.notify,
            protocol_logs=protocol_logs,
            users=self.users,
            throttles=self._throttles(config),
            budget=self.budget,
        )
        self.budget.limit = config.server.max_bytes_in_flight
        return env, ConnectorTable(config.receive_connectors)

    def _session_env(self) -> Env:
        return self.env

    def _quarantine_store(self, config: Config) -> QuarantineStore:
        return open_store(config, on_corrupt=self._quarantine_corrupt)

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

    # -- start, reload, stop --------------------------------------------------------------

    async def start(self, sockets: Sequence[socket.socket], *, primary: bool) -> None:
        """Open the policy store, listen, and start the loops of this process (and, when
        ``primary``, the gateway-wide ones)."""
        await self._open_policy_store(primary)
        await self.listener.start(sockets)
        self.tasks.start("site-learning", self.learner.run)
        if self.notifier is not None:
            self.tasks.start("notifier", self.notifier.run)
        if primary:
            self._start_upkeep()

    def _start_upkeep(self) -> None:
        """Gateway-wide upkeep, run once, in the first receiving process."""
        self.tasks.start("certificate-upkeep", self._certificate_upkeep)
        retention_store = self._quarantine_store(self.config)
        self.tasks.start(
            "quarantine-retention",
            lambda: run_retention(
                retention_store, lambda: effective_retention(self.config), self._quarantine_expired
            ),
        )
        self._start_signature_updates()
        self._start_growth_watch(retention_store)
        self._start_directory_push()
        self._start_metrics_listener()
        if self.config.quarantine.digest_enabled:
            self.tasks.start("quarantine-digest", lambda: run_digests(
                lambda: self.config, self.spool.accept, self.notify
            ))  # fmt: skip

    def reloaded(self, config: Config, env: Env) -> None:
        """Take a configuration already checked and its environment (``build_env``)."""
        if config.notify != self.config.notify:
            log.warning("[notify] changed; its channels take effect at the next restart")
        if config.metrics != self.config.metrics:
            log.warning("[metrics] changed; its listener takes effect at the next restart")
        self._carry_engine_state(env)
        configure_scoring_workers(self.scoring_workers, config)
        self.config = config
        self.env = env

    async def stop_accepting(self) -> None:
        """End the upkeep loops, then stop taking connections."""
        await self.tasks.cancel(*UPKEEP_TASKS)
        await self.listener.stop_accepting()

    async def drain(self, grace: float) -> None:
        """Let the sessions finish, then the lessons they queued."""
        await self.listener.drain(grace)
        await self.afterwards.drain(LEARNING_DRAIN)
        await self.learner.drain(LEARNING_DRAIN)

    async def close(self) -> None:
        if self.notifier is not None:
            await self.notifier.close()  # the last digests into the spool, sent at the next start
        await self.afterwards.drain(0)  # none left after drain(); these only when it was skipped
        await self.learner.close()
        await self.scoring_workers.close()
        self.agent_log.close()
        for plog in self._protocol_logs.values():
            plog.close()
        if self.state is not None:
            self.state.close()
        await self.policy_store.close()

    # -- the loops ----------------------------------------------------------------------

    def _start_directory_push(self) -> None:
        """The EdgeSync push listener, where ``[directory] push_listen`` asks for it."""
        if not self.config.directory.push_listen:
            return
        from edgeward.directory.push import build_listener  # LDAP's client, only where it is used

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

    def _carry_engine_state(self, env: Env) -> None:
        """The new scan policy learns which engines are down and paused, so a reload during an
        outage does not announce it again nor ask the frozen engine at once (and the engine's
        return is still announced)."""
        old = [a for a in self.env[0].policy.pipeline.agents if isinstance(a, Antivirus)]
        new = [a for a in env[0].policy.pipeline.agents if isinstance(a, Antivirus)]
        if old and new:
            new[0].policy.down.update(old[0].policy.down)
            new[0].policy.paused.update(old[0].policy.paused)

    def _scan_engines(self) -> list[Reloadable]:
        """The running engines with rules or lists of their own to reload (YARA, hash list)."""
        agents = self.env[0].policy.pipeline.agents
        scanners = [e.scanner for a in agents if isinstance(a, Antivirus) for e in a.policy.engines]
        return [s for s in scanners if isinstance(s, (YaraEngine, HashListEngine))]

    async def _open_policy_store(self, primary: bool) -> None:
        """Open the policy store and start its upkeep; a store that cannot open is retried on
        each call (its agents give temperror findings meanwhile), so serve still starts."""
        try:
            await self.policy_store.open()
        except PolicyStoreError as exc:
            log.error("policy store unavailable: %s", exc)
        if primary:
            self.tasks.start("policy-store-purge", self._purge_policy_store)
        self.tasks.start("ip-allow-list-refresh", self._refresh_ip_lists)

    async def _purge_policy_store(self) -> None:
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
        while True:
            try:
                await self.ip_lists.refresh()
            except PolicyStoreError as exc:
                log.warning("IP allow list refresh failed, keeping the last one: %s", exc)
            await asyncio.sleep(self.config.connection_filter.list_refresh)

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
        try:
            self.env = (replace(self.env[0], tls_contexts=tls_contexts(self.config)), self.env[1])
        except Exception:
            log.exception("could not load the renewed certificates; keeping the current ones")
