"""How ``runtime`` assembles the agent pipeline and the policy layer from a ``Config``.

Part of the composition root: it picks the implementations agents get (the DNS resolver, the
policy store, the open-proxy probe, the classifier) and puts the agents in their fixed order
(``config.schema.AGENT_NAMES``, which a test holds to this module's order). ``runtime`` re-exports
what it builds with, so the gateway and the command line have one place to ask.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from edgeward.auth.addresses import AccountAddresses
from edgeward.config.rules import GROUPS_FILE
from edgeward.config.schema import AGENT_NAMES, Config
from edgeward.content.classifier import SpamClassifier
from edgeward.content.sitelearn import SiteLearner
from edgeward.content.state import SqliteModelStateStore
from edgeward.content.words import CustomWords
from edgeward.content.workers import ScoringWorkers
from edgeward.directory.recipients import (
    AnyGroups,
    DirectoryGroups,
    DirectoryRecipients,
    DirectorySenderLists,
    StaleWatch,
)
from edgeward.directory.replica import ReplicaReader
from edgeward.filters.afterwards import Afterwards
from edgeward.filters.agents.antivirus import Antivirus
from edgeward.filters.agents.attachments import AttachmentFilter, walk_limits
from edgeward.filters.agents.connection import ConnectionFilter, IpLists
from edgeward.filters.agents.content import ContentFilter, UnloadedContentFilter
from edgeward.filters.agents.from_header import FromHeader
from edgeward.filters.agents.greylist import Greylisting
from edgeward.filters.agents.limits import BackPressure, HopCount, MessageSize
from edgeward.filters.agents.protocol import ProtocolAnalysis
from edgeward.filters.agents.rate import MessageRateLimit
from edgeward.filters.agents.rate_limits import RateLimits
from edgeward.filters.agents.recipient_filter import FileRecipients, LocalRecipients, RecipientFilter
from edgeward.filters.agents.relay import RelayControl
from edgeward.filters.agents.reputation import SenderReputation
from edgeward.filters.agents.safe_senders import AnySafeSenders, RecipientBlockedSenders, StoreSafeSenders
from edgeward.filters.agents.sender import SenderAuthority
from edgeward.filters.agents.sender_filter import SenderFilter
from edgeward.filters.agents.sender_login import SenderLogin
from edgeward.filters.agents.senderauth import SenderAuth
from edgeward.filters.agents.site_learning import SiteLearning
from edgeward.filters.agents.spf import SpfAgent
from edgeward.filters.agents.transport_rules import TransportRules
from edgeward.filters.base import Agent
from edgeward.filters.exemptions import Exemptions
from edgeward.filters.pipeline import AgentObserver, Pipeline
from edgeward.filters.policy import Policy
from edgeward.filters.rules.groups import FileGroups
from edgeward.filters.scoring import ScoreTable, Thresholds
from edgeward.filters.transforms import Transform, Transforms
from edgeward.filters.transforms.arcseal import ArcSeal
from edgeward.filters.transforms.dkimsign import DkimSign
from edgeward.filters.transforms.rules import RuleChanges
from edgeward.filters.transforms.stamps import Stamps
from edgeward.filters.transforms.strip import StripAttachments
from edgeward.net import openproxy
from edgeward.net.dns import DnsResolver
from edgeward.notify.events import EventSink
from edgeward.paths import content_state_path, directory_replica_path
from edgeward.ports import Clock, DnsLookup, PolicyStore, SystemClock
from edgeward.quarantine.service import open_store
from edgeward.quarantine.store import QuarantineStore
from edgeward.queue.spool import Spool
from edgeward.scanning.clamd import ClamdScanner
from edgeward.scanning.hashlist import HashListEngine
from edgeward.scanning.policy import Engine, MultiEnginePolicy
from edgeward.scanning.walk import WalkLimits
from edgeward.scanning.yara_engine import YaraEngine

log = logging.getLogger("edgeward.runtime")


# One reader per replica file for the process: the agents and the exemptions built together
# (and again at each reload) share its snapshot instead of loading the file once each.
_READERS: dict[Path, ReplicaReader] = {}


def directory_reader(config: Config) -> ReplicaReader:
    path = directory_replica_path(config)
    if path not in _READERS:
        _READERS[path] = ReplicaReader(path)
    return _READERS[path]


def build_classifier(config: Config) -> SpamClassifier:
    cfg = config.agents.content_filter
    model = config.resolve(cfg.model) if cfg.model is not None else None
    store = SqliteModelStateStore(content_state_path(config)) if cfg.learning else None
    words = CustomWords(cfg.good_words, cfg.bad_words)
    return SpamClassifier.load(
        model, store=store, words=words, learning=cfg.learning, refresh_interval=cfg.refresh_interval,
        own_domains=config.accepted_domains,
    )  # fmt: skip


def build_scoring_workers(config: Config) -> ScoringWorkers:
    """The scoring workers of a receiving process (kept across reloads, which re-size them)."""
    workers = ScoringWorkers(0)
    configure_scoring_workers(workers, config)
    return workers


def configure_scoring_workers(workers: ScoringWorkers, config: Config) -> None:
    cf = config.agents.content_filter
    workers.configure(
        cf.worker_count(config.server.receiver_count()), start_load=cf.worker_start_load,
        idle_stop=cf.worker_idle_stop, timeout=cf.worker_timeout, memory_limit=cf.worker_memory_limit,
    )  # fmt: skip


def build_learner(config: Config, policy_store: PolicyStore | None) -> SiteLearner:
    """The learning worker of a receiving gateway (kept across reloads, like its byte budget)."""
    cf = config.agents.content_filter
    model = config.resolve(cf.model) if cf.model is not None else None
    return SiteLearner(content_state_path(config), model, policy_store=policy_store,
                       capacity=config.learning.queue_size)  # fmt: skip


async def _no_addresses(_login: str) -> frozenset[str]:
    return frozenset()


def build_agents(
    config: Config,
    spool: Spool,
    classifier: SpamClassifier | None = None,
    *,
    addresses: AccountAddresses | None = None,
    policy_store: PolicyStore | None = None,
    ip_lists: IpLists | None = None,
    dns: DnsLookup | None = None,
    clock: Clock | None = None,
    learner: SiteLearner | None = None,
    scan_policy: MultiEnginePolicy | None = None,
    notifier: EventSink | None = None,
    scoring_workers: ScoringWorkers | None = None,
    afterwards: Afterwards | None = None,
) -> list[Agent]:
    """The pipeline in its fixed protocol order; ``agents.disabled`` leaves agents out.

    Without ``policy_store`` the store-backed parts (live lists, rate limits, per-recipient
    blocked senders) are off, and that is logged; the configured lists still apply. ``dns``
    answers the sender-authentication agents (a test passes a fake); unset, a resolver is made
    from ``[dns]``, as delivery makes one. ``learner`` is the gateway's learning worker; without
    it site learning still recognises replies, reports and traps but teaches nothing.
    ``scan_policy`` replaces the engines of ``[antivirus]`` (a test passes fake engines).
    ``notifier`` hears about infections and scan engine outages (None: nobody is told).
    ``scoring_workers`` take the content filter's scoring under load (None: always in-process).
    ``afterwards`` records sender reputation after the reply (None: before it).
    """
    if dns is None and (config.spf.enabled or config.dmarc.enabled):
        dns = DnsResolver(config.dns.servers or None, port=config.dns.port, timeout=config.dns.timeout)
    cfg = config.agents
    agents: list[Agent] = [BackPressure(spool.free_bytes, config.queue.min_free_disk), MessageRateLimit()]
    if policy_store is not None:
        agents.append(RateLimits(cfg.rate_limits, policy_store))
    else:
        configured = any(limit > 0 for limit in cfg.rate_limits.model_dump().values())
        log.log(
            logging.WARNING if configured else logging.INFO,
            "no policy store: rate-limits, live sender/recipient block lists and safe senders are off",
        )
    agents += [
        MessageSize(),
        SenderAuthority(config.accepted_domains),
        SenderLogin(addresses.owned if addresses is not None else _no_addresses),
        SenderFilter(cfg.sender_filter, policy_store),
    ]
    if config.connection_filter.enabled:
        agents.append(_connection_filter(config, ip_lists or IpLists(policy_store)))
    agents += [
        RelayControl(config.accepted_domains),
        RecipientFilter(cfg.recipient_filter.blocked_recipients, policy_store),
    ]
    local = cfg.local_recipients
    lists = None
    if local.enabled and local.source == "directory":
        reader = directory_reader(config)
        watch = StaleWatch(config.directory, notifier)
        replica = DirectoryRecipients(reader, config.directory, watch)
        agents.append(LocalRecipients(config.accepted_domains, replica))
        lists = DirectorySenderLists(reader)
    elif local.enabled:
        source = FileRecipients.read(config.resolve(local.file))
        agents.append(LocalRecipients(config.accepted_domains, source))
    if policy_store is not None or lists is not None:
        agents.append(RecipientBlockedSenders(policy_store, lists))
    if config.spf.enabled and dns is not None:
        agents.append(_spf_agent(config, dns))
    agents.append(HopCount())
    if config.agents.from_header != "off":
        agents.append(FromHeader(config.agents.from_header))
    if config.dmarc.enabled and dns is not None:
        agents.append(_sender_auth_agent(config, dns))
    if config.antivirus.enabled:
        policy = scan_policy or build_scan_policy(config, notifier)
        agents.append(Antivirus(policy, config.antivirus, notifier))
    if config.attachments.enabled:
        agents.append(AttachmentFilter(config.attachments))
    if config.agents.content_filter.enabled and "content-filter" not in config.agents.disabled:
        agents.append(_content_filter(config, classifier, scoring_workers))
    if config.rules:
        file_groups = FileGroups.read(config.resolve(GROUPS_FILE))
        groups: FileGroups | AnyGroups = file_groups
        if local.enabled and local.source == "directory":
            groups = AnyGroups(file_groups, DirectoryGroups(directory_reader(config)))
        agents.append(TransportRules(config.rules, groups))
    agents.extend(_edge_agents(config, policy_store, dns, clock or SystemClock(), afterwards))
    cf = config.agents.content_filter
    agents.append(SiteLearning(config.learning, config.accepted_domains, policy_store, learner,
                               content_learning=cf.learning, conflict_scl=cf.reject_threshold))  # fmt: skip
    return [a for a in agents if a.name not in config.agents.disabled]


def _connection_filter(config: Config, ip_lists: IpLists) -> ConnectionFilter:
    cfg = config.connection_filter
    if cfg.lookup_timeout >= config.agents.timeout:
        # Lookups outliving the agent's time limit would turn a slow DNSBL into 451 for all mail.
        log.warning("connection_filter.lookup_timeout is not below agents.timeout; using half of the latter")
        cfg = cfg.model_copy(update={"lookup_timeout": config.agents.timeout / 2})
    dns: DnsLookup | None = None
    if cfg.block_providers or cfg.allow_providers:
        d = config.dns
        dns = DnsResolver(d.servers or None, port=d.port, timeout=min(d.timeout, cfg.lookup_timeout))
    return ConnectionFilter(cfg, config.accepted_domains, lists=ip_lists, dns=dns)


def _spf_agent(config: Config, dns: DnsLookup) -> Agent:
    spf = config.spf
    return SpfAgent(
        dns, config.server.hostname, fail_action=spf.fail_action, temperror_action=spf.temperror_action,
        time_limit=spf.time_limit, helo_check=spf.check_helo,
    )  # fmt: skip


def _sender_auth_agent(config: Config, dns: DnsLookup) -> Agent:
    dmarc = config.dmarc
    return SenderAuth(
        dns, config.server.hostname, reject_action=dmarc.reject_action,
        quarantine_action=dmarc.quarantine_action, temperror_action=dmarc.temperror_action,
        trusted_sealers=config.arc.trusted_sealers,
    )  # fmt: skip


def _edge_agents(
    config: Config,
    store: PolicyStore | None,
    dns: DnsLookup | None,
    clock: Clock,
    afterwards: Afterwards | None = None,
) -> list[Agent]:
    """Protocol analysis, sender reputation and greylisting, as configured."""
    cfg, agents = config.agents, list[Agent]()
    if cfg.protocol.enabled:
        agents.append(ProtocolAnalysis(cfg.protocol))
    switches = (("sender-reputation", cfg.reputation.enabled), ("greylisting", cfg.greylist.enabled))
    wanted = [name for name, on in switches if on and name not in cfg.disabled]
    if store is None:
        if wanted:
            log.warning("%s: off, no policy store to keep state in", ", ".join(wanted))
        return agents
    if "sender-reputation" in wanted:
        if dns is None:
            d = config.dns
            dns = DnsResolver(d.servers or None, port=d.port, timeout=d.timeout)
        own = (config.server.hostname, *(c.fqdn for c in config.receive_connectors if c.fqdn),
               *config.accepted_domains)  # fmt: skip
        agents.append(
            SenderReputation(store, dns, cfg.reputation, own, probe=openproxy.probe, afterwards=afterwards)
        )
    if "greylisting" in wanted:
        agents.append(Greylisting(store, clock, cfg.greylist))
    return agents


def _content_filter(
    config: Config, classifier: SpamClassifier | None, workers: ScoringWorkers | None = None
) -> Agent:
    """The content filter; one whose classifier cannot load answers 451 instead of stopping serve."""
    cfg = config.agents.content_filter
    if classifier is not None:
        return ContentFilter(classifier, cfg, workers)
    try:
        return ContentFilter(build_classifier(config), cfg, workers)
    except Exception as exc:
        log.error("content-filter: cannot load the classifier (%s); mail gets 451 4.3.0 until it loads", exc)
        load = functools.partial(build_classifier, config)
        return UnloadedContentFilter(load, cfg, str(exc), workers=workers)


def _transforms(config: Config) -> list[Transform]:
    """The stamps, attachment stripping, the rules' changes, the DKIM signature when
    ``[dkim_sign]`` is on (it signs what they made), then the ARC seal when ``[arc]`` configures
    one (it seals the message as it leaves)."""
    chain: list[Transform] = [Stamps(exchange=config.stamps.exchange_organization)]
    if config.attachments.enabled and config.attachments.action == "strip":
        store: Callable[[], QuarantineStore] = functools.cache(lambda: open_store(config))
        chain.append(StripAttachments(config.attachments, store, observe_only=config.agents.observe_only))
    if config.rules:
        chain.append(RuleChanges(config.rules, observe_only=config.agents.observe_only))
    signing = config.dkim_sign
    if signing.enabled:
        try:
            chain.append(DkimSign(signing, config.resolve(signing.key_file).read_bytes()))
        except OSError as exc:
            log.error("dkim-sign: cannot read the signing key (%s); outbound mail is not signed", exc)
    arc = config.arc
    if arc.seal_domain and arc.seal_key is not None:
        try:
            key = config.resolve(arc.seal_key).read_bytes()
        except OSError as exc:
            # Mail keeps flowing unsealed rather than stopping on a missing key.
            log.error("arc-seal: cannot read the sealing key (%s); accepted mail is not sealed", exc)
            return chain
        chain.append(ArcSeal(arc.seal_domain, arc.seal_selector, key, config.server.hostname))
    return chain


def build_policy(
    config: Config,
    agents: Sequence[Agent],
    *,
    observer: AgentObserver | None = None,
    allow_list: Callable[[str], bool] | None = None,
    policy_store: PolicyStore | None = None,
) -> Policy:
    """The policy layer over ``agents``: score table, thresholds, exemptions and transforms."""
    sources: list[StoreSafeSenders | DirectorySenderLists] = []
    if policy_store is not None:
        sources.append(StoreSafeSenders(policy_store))
    local = config.agents.local_recipients
    if local.enabled and local.source == "directory":
        sources.append(DirectorySenderLists(directory_reader(config)))
    safe = AnySafeSenders(*sources) if sources else None
    pipeline = Pipeline(
        agents,
        timeout=config.agents.timeout,
        observe_only=config.agents.observe_only,
        observer=observer,
        scores=ScoreTable(config.scores),
    )
    return Policy(
        pipeline,
        Thresholds.from_config(config),
        Exemptions.from_config(config, allow_list=allow_list, safe_senders=safe),
        Transforms(_transforms(config), authserv_id=config.server.hostname),
        postmaster=f"postmaster@{config.accepted_domains[0]}" if config.accepted_domains else "",
        tarpit_max=config.agents.protocol.tarpit_max if config.agents.protocol.enabled else 0.0,
        listeners=[a for a in agents if isinstance(a, SenderReputation | SiteLearning)],
        walk_limits=_walk_limits(config),
    )


def _walk_limits(config: Config) -> WalkLimits:
    """The walk's bounds, and what of an item's type anything reads (``WalkLimits``): text
    subtypes are read by the consumers that need them (``truetype.refine``), never by the walk."""
    av = config.antivirus
    in_memory_engines = av.enabled and (av.yara.enabled or av.office.enabled)
    return replace(
        walk_limits(config.attachments),
        text_subtypes=False,
        body_libmagic=av.enabled and av.office.enabled,
        # YARA and the Office engine read an item's bytes in memory; without them a large leaf of
        # a message kept in a file keeps its head and digest only (clamd reads the file itself).
        hold_leaves=in_memory_engines,
    )


def build_scan_policy(config: Config, notifier: EventSink | None = None) -> MultiEnginePolicy:
    """The enabled scan engines of ``[antivirus]`` under its bias, for the agent and ``av``."""
    av = config.antivirus
    # An engine outliving the agent's time limit would answer 451 4.3.0 (agent failure) where
    # the scan policy should say 451 4.7.0 (scanner unavailable).
    cap = config.agents.timeout * 0.9
    engines: list[Engine] = []
    if av.clamd.enabled:
        timeout = min(av.clamd.timeout, cap)
        if timeout < av.clamd.timeout:
            log.warning("antivirus.clamd.timeout is cut to 90%% of agents.timeout (%gs)", cap)
        clamd = ClamdScanner(
            av.clamd.address, timeout=timeout, chunk_size=av.clamd.chunk_size, max_stream=av.clamd.max_stream
        )
        engines.append(Engine(clamd, timeout, av.clamd.required))
    engines.extend(build_file_engines(config, cap))
    return MultiEnginePolicy(engines, av.require, notifier, retry_after=av.retry_after)


def build_file_engines(config: Config, cap: float) -> list[Engine]:
    """YARA, the Office analysis and the hash list, as [antivirus] enables them."""
    av = config.antivirus
    engines: list[Engine] = []
    if av.yara.enabled:
        timeout = min(av.yara.timeout, cap)
        yara = YaraEngine(config.resolve(av.yara.rules_dir), timeout=timeout)
        engines.append(Engine(yara, timeout, av.yara.required))
    if av.office.enabled:
        timeout = min(av.office.timeout, cap)
        # oletools and its parsers (12 MB) are loaded only by a gateway that scans Office files.
        from edgeward.scanning.office import OfficeEngine

        # The pool's own limit kills a worker just before the policy stops waiting for it.
        office = OfficeEngine(timeout=timeout * 0.95, workers=av.office.workers)
        engines.append(Engine(office, timeout, av.office.required))
    if av.hashes.file is not None:
        engines.append(Engine(HashListEngine(config.resolve(av.hashes.file)), cap, av.hashes.required))
    return engines


# Agents that exist only with a policy store, and agents that lose a part without one.
STORE_AGENTS = ("rate-limits", "safe-senders", "sender-reputation", "greylisting")
STORE_PARTS = {
    "sender-filter": "live sender block list",
    "connection-filter": "live IP allow/block lists",
    "recipient-filter": "live recipient block list",
}


@dataclass(frozen=True, slots=True)
class ListedAgent:
    """One row of ``edgeward agents list``: a built agent, or a store-backed one left out."""

    name: str
    agent: Agent | None
    off: str = ""  # why it does not run ("no policy store")
    without_store: str = ""  # the part of a built agent that is off without the store


def pipeline_listing(config: Config, agents: Sequence[Agent], *, policy_store: bool) -> list[ListedAgent]:
    """``agents`` in their order, with the store-backed agents ``build_agents`` left out for want
    of a policy store put back in their place, so a listing never hides them."""
    built = {a.name: a for a in agents}
    cfg = config.agents
    wanted = {
        "rate-limits": True,
        "safe-senders": True,
        "sender-reputation": cfg.reputation.enabled,
        "greylisting": cfg.greylist.enabled,
    }
    rows: list[ListedAgent] = []
    for name in AGENT_NAMES:
        if name in built:
            part = "" if policy_store else STORE_PARTS.get(name, "")
            rows.append(ListedAgent(name, built[name], without_store=part))
        elif not policy_store and wanted.get(name) and name not in cfg.disabled:
            rows.append(ListedAgent(name, None, off="no policy store"))
    # Agents not in the catalogue (a test's own) keep their place at the end.
    rows += [ListedAgent(a.name, a) for a in agents if a.name not in AGENT_NAMES]
    return rows
