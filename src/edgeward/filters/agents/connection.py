"""Connection filtering (issue 8 §2.1; Exchange's Connection Filtering agent): who may send at all.

Four sources, asked in Exchange's order for the client's address:

1. the IP allow list: the client skips every anti-spam agent. It is answered by the
   exemptions (``filters.exemptions``, through :meth:`IpLists.allowed_ip`), so this agent is
   not even called for an allow-listed client;
2. the IP block list: refused at RCPT with ``ip_block_response`` (``IP_BLOCKED``);
3. DNS allow list providers (DNSWL): a listing outweighs a DNSBL listing at RCPT and scores
   ``DNSWL_LISTED`` (negative), rather than exempting the client from every other agent: a
   DNSWL says an address usually sends good mail, not that this message is;
4. DNS block list providers (DNSBL): refused at RCPT with the provider's text
   (``DNSBL_LISTED``); with several listings, the provider of the lowest priority names it.

Both IP lists live in the policy store (lists ``ip-allow`` and ``ip-block``, members in CIDR
form, each with an optional expiry and comment), so ``edgeward antispam ip`` changes them on
the running gateway: the block list is read at each CONNECT, the allow list snapshot (which the
exemptions ask synchronously) at each CONNECT and every ``list_refresh`` seconds.

Provider lookups start at CONNECT, all at once, and are awaited at MAIL, so they run while the
client says EHLO and cost nothing in the common case. As Exchange does, a refusal waits until
RCPT: ``bypassed_recipients`` (postmaster and abuse at any accepted domain by default) still get
the mail, and the sender and recipients of refused mail are logged; once the recipients are done
(DATA with every one refused) the session answers and closes the connection, as Exchange drops
it (``disconnect``, on by default), and tracks the close. A store or DNS fault gives a
``*_TEMPERROR`` finding and never a listing; the mail goes on as for an unlisted client.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from edgeward.config.schema import ConnectionFilterConfig
from edgeward.filters.agents.dnsbl import ProviderResult, ask_all
from edgeward.filters.base import Stage, StageContext
from edgeward.filters.storecalls import together
from edgeward.ports import Clock, DnsLookup, ListEntry, PolicyStore, PolicyStoreError, SystemClock
from edgeward.types import Action, Address, Finding, Outcome, Reply, client_address

log = logging.getLogger("edgeward.agents.connection")

ALLOW_LIST = "ip-allow"
BLOCK_LIST = "ip-block"
LISTS = {"allow": ALLOW_LIST, "block": BLOCK_LIST}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(text: str) -> Network:
    """A list member in canonical CIDR form; an address alone is its /32 or /128."""
    net = ipaddress.ip_network(text.strip().removeprefix("[").removesuffix("]"), strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and (mapped := net[0].ipv4_mapped):
        # ::ffff:a.b.c.d is the IPv4 client the gateway sees as a.b.c.d (Peer.address).
        return ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}", strict=False)
    return net


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return client_address(ip)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class _Member:
    network: Network
    entry: ListEntry


def _members(entries: Sequence[ListEntry]) -> tuple[_Member, ...]:
    members: list[_Member] = []
    for entry in entries:
        try:
            members.append(_Member(parse_network(entry.member), entry))
        except ValueError:
            log.warning("ignoring IP list member %r: not an IP network", entry.member)
    # Most specific first, so the entry shown for a client is the narrowest that holds it.
    return tuple(sorted(members, key=lambda m: -m.network.prefixlen))


class IpLists:
    """The IP allow and block lists of the policy store, with a snapshot for synchronous readers.

    Each read asks the store for the list's version token first (a point lookup) and reads and
    parses the members again only when it moved: reading a whole list was a trip to the store's
    worker thread per list and connection, about a quarter of the CPU of a connection that only
    says EHLO and QUIT (``bench/README.md``), and it grew with the list.
    """

    def __init__(self, store: PolicyStore | None, clock: Clock | None = None) -> None:
        self.store = store
        self._clock = clock if clock is not None else SystemClock()
        self._allow: tuple[_Member, ...] = ()
        self._read: dict[str, tuple[str, tuple[_Member, ...]]] = {}  # which -> (token, members)

    async def read(self, which: str) -> tuple[_Member, ...]:
        """The members of list ``which`` ("allow" or "block"); raises PolicyStoreError.

        Members that expired since they were read are still in it; :meth:`_find` skips them.
        """
        if self.store is None:
            return ()
        name = LISTS[which]
        # The token before the members: a change between the two reads leaves a newer token
        # than the one kept, so the next read reads again.
        token = await self.store.list_version(name)
        kept = self._read.get(which)
        if kept is not None and kept[0] == token:
            return kept[1]
        members = _members(await self.store.list_members(name))
        self._read[which] = (token, members)
        return members

    async def refresh(self) -> None:
        """Re-read the allow list snapshot; raises PolicyStoreError (the old snapshot stays)."""
        self._allow = await self.read("allow")

    def _find(self, members: tuple[_Member, ...], ip: str) -> ListEntry | None:
        address = _address(ip)
        if address is None:
            return None
        now = self._clock.now()
        for m in members:
            # An entry that expired since the snapshot was read no longer counts.
            if m.entry.expires_at is not None and m.entry.expires_at <= now:
                continue
            if address.version == m.network.version and address in m.network:
                return m.entry
        return None

    def allowed_ip(self, ip: str) -> bool:
        """The exemptions hook: whether ``ip`` is on the allow list (from the snapshot)."""
        return self._find(self._allow, ip) is not None

    async def lookup(self, which: str, ip: str) -> ListEntry | None:
        members = await self.read(which)
        if which == "allow":
            self._allow = members
        return self._find(members, ip)


@dataclass(slots=True)
class _SessionState:
    ip: str
    connector: str
    allowed: bool = False
    blocked: ListEntry | None = None
    lookups: asyncio.Task[list[ProviderResult]] | None = None
    results: list[ProviderResult] | None = None
    findings: list[Finding] = field(default_factory=list)


class ConnectionFilter:
    """IP allow/block lists and DNSBL/DNSWL providers; refuses listed clients at RCPT."""

    name = "connection-filter"
    stages = frozenset({Stage.CONNECT, Stage.MAIL, Stage.RCPT})
    antispam = True
    fail_open = False

    def __init__(
        self,
        config: ConnectionFilterConfig,
        accepted_domains: Sequence[str],
        *,
        lists: IpLists,
        dns: DnsLookup | None = None,
        max_sessions: int = 50_000,
    ) -> None:
        self.config = config
        self.lists = lists
        self.dns = dns
        self.accepted = frozenset(d.lower() for d in accepted_domains)
        self.bypassed_locals = frozenset(r.lower() for r in config.bypassed_recipients if "@" not in r)
        self.bypassed = frozenset(r.lower() for r in config.bypassed_recipients if "@" in r)
        self._max_sessions = max_sessions
        # Per-session state by session id; there is no disconnect event, so memory is bounded by
        # forgetting the oldest sessions first (their lookups long finished).
        self._sessions: OrderedDict[str, _SessionState] = OrderedDict()

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        if stage is Stage.CONNECT:
            return await self._connect(ctx)
        state = self._sessions.get(ctx.session.session_id)
        if state is None or state.allowed:
            return Outcome.proceed()
        if stage is Stage.MAIL:
            return Outcome.proceed(*await self._findings(state))
        return await self._rcpt(state, ctx)

    async def _connect(self, ctx: StageContext) -> Outcome:
        ip = ctx.session.peer.ip
        state = _SessionState(ip, ctx.session.connector.name)
        self._remember(ctx.session.session_id, state)
        try:
            # Read fresh: an entry added a moment ago by the CLI applies to this connection.
            # Both lists at once (one trip to the store); an allowed client is never blocked.
            allowed, blocked = await together(self.lists.lookup(which, ip) for which in ("allow", "block"))
            state.allowed = allowed is not None
            if not state.allowed:
                state.blocked = blocked
        except PolicyStoreError as exc:
            log.warning("connection-filter: IP lists unavailable, %s not checked against them: %s", ip, exc)
            state.findings.append(Finding("IP_LIST_TEMPERROR", self.name, str(exc)))
        if state.allowed or state.blocked is not None:
            return Outcome.proceed(*state.findings)
        providers = (*self.config.allow_providers, *self.config.block_providers)
        if providers and self.dns is not None:
            state.lookups = asyncio.create_task(
                ask_all(self.dns, providers, ip, self.config.lookup_timeout), name=f"dnsbl {ip}"
            )
        return Outcome.proceed(*state.findings)

    def _remember(self, session_id: str, state: _SessionState) -> None:
        self._sessions[session_id] = state
        while len(self._sessions) > self._max_sessions:
            _, old = self._sessions.popitem(last=False)
            if old.lookups is not None:
                old.lookups.cancel()

    async def results(self, state: _SessionState) -> list[ProviderResult]:
        if state.results is None:
            state.results = await state.lookups if state.lookups is not None else []
        return state.results

    async def _findings(self, state: _SessionState) -> list[Finding]:
        """The findings of the lists and providers, reported with every transaction (at MAIL)."""
        findings = list(state.findings)
        if state.blocked is not None:
            return findings
        allow = {p.name for p in self.config.allow_providers}
        for r in await self.results(state):
            kind = "DNSWL" if r.provider.name in allow else "DNSBL"
            detail = f"{r.provider.name} ({r.provider.zone}): {r.detail or r.status}"
            if r.listed:
                findings.append(Finding(f"{kind}_LISTED", self.name, detail))
            elif r.status == "error":
                findings.append(Finding("DNSBL_ERROR", self.name, detail))
            elif r.status == "temperror":
                findings.append(Finding("DNSBL_TEMPERROR", self.name, detail))
        return findings

    def bypassed_recipient(self, recipient: Address) -> bool:
        if str(recipient).lower() in self.bypassed:
            return True
        domain = recipient.domain.lower().rstrip(".")
        return recipient.local.lower() in self.bypassed_locals and domain in self.accepted

    async def _rcpt(self, state: _SessionState, ctx: StageContext) -> Outcome:
        if ctx.recipient is None or self.bypassed_recipient(ctx.recipient):
            return Outcome.proceed()
        fields = {"ip": state.ip, "connector": state.connector, "provider": "IP block list"}
        if state.blocked is not None:
            text = self.config.ip_block_response.format_map(fields)
            comment = f": {state.blocked.comment}" if state.blocked.comment else ""
            finding = Finding("IP_BLOCKED", self.name, f"{state.blocked.member}{comment}")
            return self._refuse(text, finding)
        results = await self.results(state)
        allow = {p.name for p in self.config.allow_providers}
        if any(r.listed and r.provider.name in allow for r in results):
            return Outcome.proceed()
        for r in results:  # in priority order
            if r.listed and r.provider.name not in allow:
                text = r.provider.rejection_response.format_map({**fields, "provider": r.provider.name})
                finding = Finding(
                    "DNSBL_LISTED", self.name, f"{r.provider.name} ({r.provider.zone}): {r.detail}"
                )
                return self._refuse(text, finding)
        return Outcome.proceed()

    def _refuse(self, text: str, finding: Finding) -> Outcome:
        reply = Reply(550, "5.7.1", text)
        return Outcome(Action.REJECT, reply, (finding,), close_after_recipients=self.config.disconnect)
