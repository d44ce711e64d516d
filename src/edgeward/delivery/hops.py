"""The hosts of one delivery and the TLS each must get: the lookups behind the TLS policy.

This module owns the questions the delivery client asks DNS and the web before it connects:
the recipient domain's MTA-STS policy (once per delivery), whether the MX answer was
DNSSEC-authenticated (once per delivery, for DANE and REQUIRETLS alike), and each MX host's
DANE records. It drops the MX hosts an enforced MTA-STS policy does not list, refuses a
REQUIRETLS message whose MX answer nothing authenticated (RFC 8689 §4.2.1), and hands each
host's facts to :func:`~edgeward.delivery.tlspolicy.combine`. A :class:`Hop` also words the
report of an MTA-STS policy in ``testing`` mode (RFC 8461 §5).

Security: a DNS failure on the DANE path is raised (the host is skipped, the mail deferred),
never read as "no DANE": that would let an attacker who breaks DNSSEC answers strip TLS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

from edgeward.config.schema import SendConnectorConfig
from edgeward.delivery import dane
from edgeward.delivery.mta_sts import MtaSts, StsPolicy
from edgeward.delivery.mx import Target
from edgeward.delivery.routing import Route
from edgeward.delivery.tlspolicy import TlsPolicy, combine
from edgeward.errors import DeliveryError
from edgeward.net.dns import DnsResolver
from edgeward.ports import Resolver, ResolverError
from edgeward.queue.model import MessageRecord
from edgeward.types import Reply

__all__ = ["Hop", "HopPlanner", "Plan"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Hop:
    """One host of a route and the TLS it must get."""

    target: Target
    policy: TlsPolicy
    tlsa: dane.DanePolicy | None
    domain: str  # the next-hop domain for MX routing; empty for smart hosts
    sts_testing: bool = False  # an MTA-STS policy in testing mode: report what enforce would refuse
    sts_listed: bool = True  # the host is one the policy lists

    def sts_report(self, problem: str | None) -> str:
        """For a testing MTA-STS policy: what ``enforce`` would make of this host (RFC 8461 §5)."""
        if not self.sts_testing:
            return ""
        if not self.sts_listed:
            problem = "MX host not listed in the policy" + (f", {problem}" if problem else "")
        if problem is None:
            return "; MTA-STS testing: would pass"
        log.warning(
            "MTA-STS (testing) for %s: %s would fail under enforce: %s",
            self.domain,
            self.target.host,
            problem,
        )
        return f"; MTA-STS testing: would fail ({problem})"


@dataclass(frozen=True, slots=True)
class _MxCheck:
    """Whether the MX answer of a delivery's domain was DNSSEC-authenticated, or why unknown."""

    secure: bool
    error: ResolverError | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """What one delivery learnt before trying its hosts."""

    route: Route
    hosts: list[Target]
    sts: StsPolicy | None
    mx: _MxCheck | None


def _exempt(record: MessageRecord) -> bool:
    """``TLS-Required: No`` without REQUIRETLS: the recipient domain's policies do not apply."""
    return record.tls_optional and not record.require_tls


class HopPlanner:
    """The policy lookups of one send connector."""

    def __init__(
        self, connector: SendConnectorConfig, resolver: Resolver | None, mta_sts: MtaSts | None
    ) -> None:
        self._connector = connector
        self._resolver = resolver
        self._mta_sts = mta_sts if connector.mta_sts else None

    async def prepare(self, route: Route, record: MessageRecord, hosts: list[Target]) -> Plan:
        """The hosts to try and the facts all of them share; raises DeliveryError to defer."""
        sts = await self._sts(route, record)
        mx = await self._mx_check(route, record)
        return Plan(route, self._vet_hosts(route, record, hosts, sts, mx), sts, mx)

    async def hop(self, plan: Plan, record: MessageRecord, target: Target) -> Hop:
        """The TLS ``target`` must get; raises a transient ResolverError when DANE cannot tell."""
        route, sts, mx = plan.route, plan.sts, plan.mx
        tlsa: dane.DanePolicy | None = None
        if self._connector.dane and route.kind == "dns" and not _exempt(record):
            # A bogus or unreachable MX answer, or a failed lookup here, raises a transient
            # ResolverError: the host is skipped and the mail deferred, never sent unprotected.
            if mx is not None and mx.error is not None:
                raise mx.error
            resolver = cast(DnsResolver, self._resolver)
            secure = mx.secure if mx is not None else None
            tlsa = await dane.lookup(resolver, route.next_hop, target.host, target.port, mx_secure=secure)
        policy = combine(
            self._connector.tls,
            requiretls=record.require_tls,
            tls_optional=record.tls_optional,
            sts_mode=sts.mode if sts is not None else None,
            dane_state=tlsa.state if tlsa is not None else None,
        )
        testing = sts is not None and sts.mode == "testing"
        listed = sts is None or sts.matches(target.host)
        return Hop(target, policy, tlsa, route.next_hop if route.kind == "dns" else "", testing, listed)

    async def _sts(self, route: Route, record: MessageRecord) -> StsPolicy | None:
        if self._mta_sts is None or route.kind != "dns" or _exempt(record):
            return None
        policy = await self._mta_sts.policy(route.next_hop)
        return policy if policy is not None and policy.mode != "none" else None

    async def _mx_check(self, route: Route, record: MessageRecord) -> _MxCheck | None:
        """Whether the MX answer was authenticated, asked once for every policy that needs it
        (DANE, REQUIRETLS); None when none does."""
        if route.kind != "dns" or not isinstance(self._resolver, DnsResolver):
            return None
        if not ((self._connector.dane and not _exempt(record)) or record.require_tls):
            return None
        try:
            return _MxCheck(await self._resolver.mx_secure(route.next_hop))
        except ResolverError as exc:
            return _MxCheck(False, exc)

    @staticmethod
    def _vet_hosts(
        route: Route,
        record: MessageRecord,
        hosts: list[Target],
        sts: StsPolicy | None,
        mx: _MxCheck | None,
    ) -> list[Target]:
        """Drop the MX hosts an enforced MTA-STS policy does not list; check REQUIRETLS's MX rule."""
        domain = route.next_hop
        enforced = sts is not None and sts.mode == "enforce"
        if sts is not None:
            listed = [t for t in hosts if sts.matches(t.host)]
            unlisted = [t.host for t in hosts if t not in listed]
            if unlisted and sts.mode == "testing":
                log.warning("MTA-STS (testing) for %s does not list MX %s", domain, ", ".join(unlisted))
            elif enforced:
                if not listed:
                    reply = Reply(451, "4.7.5", f"No MX host of {domain} matches its MTA-STS policy")
                    raise DeliveryError(reply.text, reply=reply)
                hosts = listed
        # RFC 8689 §4.2.1: the MX answer itself must be authenticated, by DNSSEC or MTA-STS.
        if record.require_tls and route.kind == "dns" and not enforced and not (mx is not None and mx.secure):
            reply = Reply(451, "4.7.10", f"REQUIRETLS: the MX hosts of {domain} are not authenticated")
            raise DeliveryError(reply.text, reply=reply)
        return hosts
