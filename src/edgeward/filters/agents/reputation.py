"""Sender reputation (issue 8 §2.6): an SRL of 0-9 per client address, and a block at the threshold.

Exchange's protocol analysis rates a sender by what its sessions look like; so does this agent:

- at CONNECT, reverse DNS and forward-confirmed reverse DNS through ``DnsLookup``: no PTR is
  ``RDNS_NONE``, a PTR whose name does not resolve back to the address ``RDNS_UNCONFIRMED``, a
  DNS failure ``RDNS_TEMPERROR`` (never counted against the client). A rated address also gets
  its ``SRL_<n>`` finding and an ``X-Edgeward-SRL`` stamp;
- at HELO, the name: not a domain or address literal (``HELO_INVALID``), an address literal that
  is not the client's (``HELO_LITERAL_MISMATCH``), our own name or an accepted domain
  (``HELO_FORGED``);
- after every verdict (``learned``, a ``filters.policy.VerdictListener``): the message's SCL
  (its ``SCL_<n>`` finding, else the verdict's total, 0-9) and whether its session had HELO,
  reverse-DNS or protocol findings are added to the address's counters in the policy store.

The rating, from the counters over ``n`` messages (``n >= min_messages``, else no rating)::

    SRL = 0.6 * mean SCL + 2 * (share with a HELO finding) + 2 * (share with an rDNS finding)
          + min(3, 3 * protocol findings per message),   rounded, 0-9

so an address whose mail rates SCL 9 on average and that always lacks reverse DNS reaches 7.
At or above ``block_threshold`` the address is blocked for ``block_time``: RCPT gets
``550 5.7.1`` (a hard decision, made at RCPT as the connection filter's is, so the sender and
recipients are logged and a bypassed recipient still gets mail). Counters are fixed windows of
``history`` seconds from their first increment (the store's ``incr``), so old behaviour ages out
without a sweep. A store failure is a ``REPUTATION_TEMPERROR`` finding, never a block.

With ``open_proxy_test`` (off by default: it connects out to every new client), CONNECT also
tries the client's proxy ports (``net.openproxy``), at most once per ``open_proxy_cache`` per
address; an open proxy is an ``OPEN_PROXY`` finding and rates SRL 9 once rated at all.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from edgeward.config.schema import ReputationConfig
from edgeward.filters.afterwards import Afterwards
from edgeward.filters.base import Stage, StageContext
from edgeward.filters.verdict import Verdict
from edgeward.ports import DnsError, DnsFailure, DnsLookup, PolicyStore, PolicyStoreError
from edgeward.types import Action, Finding, Outcome, Reply

log = logging.getLogger("edgeward.reputation")

BLOCKED = Reply(550, "5.7.1", "Client address blocked by sender reputation")
_RDNS = frozenset({"RDNS_NONE", "RDNS_UNCONFIRMED"})
_MAX_PTR = 3  # forward-confirm at most this many PTR names: a client controls its PTR set


def rating(n: int, scl: int, helo: int, rdns: int, proto: int, proxy: int = 0) -> int:
    """The SRL of an address from its counters (see the module docstring)."""
    if proxy:
        return 9
    points = 0.6 * scl / n + 2 * helo / n + 2 * rdns / n + min(3.0, 3 * proto / n)
    return max(0, min(9, round(points)))


def helo_findings(name: str, client_ip: str, own: Iterable[str], agent: str) -> list[Finding]:
    """What a HELO/EHLO name says about the client."""
    if name.startswith("[") and name.endswith("]"):
        literal = name[1:-1].removeprefix("IPv6:")
        try:
            if ipaddress.ip_address(literal) != ipaddress.ip_address(client_ip):
                return [Finding("HELO_LITERAL_MISMATCH", agent, name)]
        except ValueError:
            return [Finding("HELO_INVALID", agent, name)]
        return []
    lowered = name.lower().rstrip(".")
    if "." not in lowered or _is_address(lowered):
        return [Finding("HELO_INVALID", agent, name)]
    if lowered in own:
        return [Finding("HELO_FORGED", agent, name)]
    return []


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class ProxyProbe(Protocol):
    """Try ``ip`` as an open proxy towards ``target``; how it relayed, or "" if it did not."""

    async def __call__(
        self,
        ip: str,
        target: tuple[str, int],
        *,
        http_ports: Sequence[int] = (),
        socks_ports: Sequence[int] = (),
        limit: float = 5.0,
    ) -> str: ...


class SenderReputation:
    """Rate client addresses SRL 0-9 from HELO, reverse DNS, SCL history and protocol findings."""

    name = "sender-reputation"
    stages = frozenset({Stage.CONNECT, Stage.HELO, Stage.RCPT})
    antispam = True
    fail_open = True

    def __init__(
        self,
        store: PolicyStore,
        dns: DnsLookup,
        config: ReputationConfig,
        own_names: Iterable[str] = (),
        *,
        probe: ProxyProbe | None = None,
        afterwards: Afterwards | None = None,
    ) -> None:
        """``probe`` is the open-proxy test (``net.openproxy.probe``, given by ``runtime``);
        without one the test is not run, whatever ``open_proxy_test`` says. ``afterwards``
        (the receiving process's) records the history after the reply; without it, before."""
        self.store = store
        self.dns = dns
        self.config = config
        self.probe = probe
        self.afterwards = afterwards
        self.own = frozenset(n.lower().rstrip(".") for n in own_names)

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        ip = _client(ctx)
        if not ip:
            return Outcome.proceed()
        if stage is Stage.HELO:
            return Outcome.proceed(*helo_findings(ctx.session.helo, ip, self.own, self.name))
        try:
            if stage is Stage.RCPT:
                if blocked := await self.store.get(f"rep:block:{ip}"):
                    return Outcome.reject(BLOCKED, Finding("REPUTATION_BLOCKED", self.name, blocked))
                return Outcome.proceed()
            srl = await self.store.get(f"rep:srl:{ip}")
        except PolicyStoreError as exc:
            log.warning("sender-reputation: policy store unavailable, %s not rated: %s", ip, exc)
            return Outcome.proceed(Finding("REPUTATION_TEMPERROR", self.name, str(exc)))
        rdns = await self._rdns(ip)
        findings = [rdns] if rdns is not None else []
        wants_proxy_test = self.config.open_proxy_test and self.probe is not None
        if wants_proxy_test and (proxy := await self._open_proxy(ctx, ip)):
            findings.append(proxy)
        headers: tuple[tuple[str, str], ...] = ()
        if srl is not None:
            findings.append(Finding(f"SRL_{srl}", self.name))
            headers = (("X-Edgeward-SRL", srl),)
        return Outcome(Action.CONTINUE, None, tuple(findings), headers)

    async def _rdns(self, ip: str) -> Finding | None:
        """The reverse-DNS finding for ``ip``; None when its PTR is forward-confirmed.

        A client on this host (loopback, link-local) has no PTR worth asking anyone about.
        """
        address = ipaddress.ip_address(ip)
        if address.is_loopback or address.is_link_local:
            return None
        try:
            names = (await self.dns.query(address.reverse_pointer, "PTR")).records
            if not names:
                return Finding("RDNS_NONE", self.name, "no PTR record")
            rdtype = "A" if address.version == 4 else "AAAA"
            for name in names[:_MAX_PTR]:
                try:
                    forward = (await self.dns.query(name, rdtype)).records
                except DnsError as exc:
                    if exc.failure in (DnsFailure.NXDOMAIN, DnsFailure.INVALID):
                        continue
                    raise
                if any(_same(ip, a) for a in forward):
                    return None
            return Finding("RDNS_UNCONFIRMED", self.name, f"{names[0]} does not resolve to {ip}")
        except DnsError as exc:
            if exc.failure is DnsFailure.NXDOMAIN:
                return Finding("RDNS_NONE", self.name, "no PTR record")
            return Finding("RDNS_TEMPERROR", self.name, str(exc))

    async def _open_proxy(self, ctx: StageContext, ip: str) -> Finding | None:
        """Test ``ip`` as an open proxy once per ``open_proxy_cache``; the result is cached, and
        so is "testing" while it runs, so the test's own connection back to us is not tested."""
        peer, cfg, key = ctx.session.peer, self.config, f"rep:proxy:{ip}"
        if not peer.local_ip or not peer.local_port:
            return None
        try:
            if await self.store.add(key, "testing", ttl=cfg.open_proxy_cache):
                assert self.probe is not None  # check() asks only with a probe
                found = await self.probe(
                    ip, (peer.local_ip, peer.local_port), http_ports=cfg.open_proxy_http_ports,
                    socks_ports=cfg.open_proxy_socks_ports, limit=cfg.open_proxy_timeout,
                )  # fmt: skip
                await self.store.set(key, found or "no", ttl=cfg.open_proxy_cache)
                if found:
                    log.warning("sender reputation: %s is an open proxy (%s)", ip, found)
            else:
                found = await self.store.get(key) or ""
        except PolicyStoreError as exc:
            log.warning("sender-reputation: open-proxy result for %s unavailable: %s", ip, exc)
            return Finding("REPUTATION_TEMPERROR", self.name, str(exc))
        if found in ("", "no", "testing"):
            return None
        return Finding("OPEN_PROXY", self.name, found)

    async def learned(self, ctx: StageContext, verdict: Verdict) -> None:
        """Count one message into its address's history and rate the address.

        The counts are taken here; with ``afterwards`` the store's trips run beside the commit
        and the reply (``filters.afterwards``), holding the counts, not the message."""
        if verdict.exempt or ctx.session.authenticated:
            return
        ip = _client(ctx)
        if not ip:
            return
        names = [f.name for f in verdict.findings]
        scl = next((int(n[4:]) for n in names if n.startswith("SCL_") and n[4:].isdigit()), None)
        if scl is None:
            scl = max(0, min(9, round(verdict.total)))
        counts = {
            "n": 1,
            "scl": scl,
            "helo": int(any(n.startswith("HELO_") for n in names)),
            "rdns": int(any(n in _RDNS for n in names)),
            "proto": sum(n.startswith("PROTOCOL_") for n in names),
            "proxy": int("OPEN_PROXY" in names),
        }
        if self.afterwards is None:
            await self._record(ip, counts)
        else:
            await self.afterwards.submit(self._record(ip, counts))

    async def _record(self, ip: str, counts: dict[str, int]) -> None:
        window = self.config.history
        try:
            # Every counter at once: one trip to the store, not six.
            added = await self.store.incr_many({f"rep:{ip}:{k}": v for k, v in counts.items()}, window=window)
            totals = {k: added[f"rep:{ip}:{k}"] for k in counts}
            if totals["n"] < self.config.min_messages:
                return
            srl = rating(**totals)
            await self.store.set(f"rep:srl:{ip}", str(srl), ttl=window)
            if srl >= self.config.block_threshold:
                reason = f"SRL {srl} over {totals['n']} messages"
                await self.store.set(f"rep:block:{ip}", reason, ttl=self.config.block_time)
                log.warning("sender reputation: %s blocked for %gs (%s)", ip, self.config.block_time, reason)
        except PolicyStoreError as exc:
            log.error("sender reputation: cannot record %s: %s", ip, exc)


def _client(ctx: StageContext) -> str:
    """The client address in canonical form (IPv4-mapped IPv6 as IPv4); empty if it has none."""
    try:
        return str(ctx.session.peer.address)
    except ValueError:
        return ""


def _same(ip: str, other: str) -> bool:
    try:
        return ipaddress.ip_address(ip) == ipaddress.ip_address(other)
    except ValueError:
        return False
