"""The DNS checks of ``harden analyse``: the accepted domains as the world sees them.

Queries go through the resolvers the gateway itself uses (``dns.servers``, ``dns.port``), so a
split-horizon setup is judged by what the gateway sees; for the public view, list a public
resolver there or run analyse against a copy of the configuration that does. A resolver that
does not answer makes the check "not checked", never a finding: a finding must be a fact about
the published records. Wildcard accepted domains (``*.example.org``) have no records of their
own and are skipped.

Outbound, the domains a send connector names explicitly in its address spaces (a partner, a
bank) are checked against their ``_mta-sts`` TXT record, parsed by the delivery code's
:func:`~edgeward.delivery.mta_sts.parse_txt`: a domain that publishes one, routed by a
connector that would not send to it as an ``enforce`` policy asks (the precedence of
``delivery.tlspolicy``: ``mta_sts = true`` or ``tls = verify_hostname``), is EW-TLS-004 naming
the domain. The policy file itself (HTTPS) is not fetched, so its mode is not known: a
``testing`` policy is reported too, as the domain has said it means to enforce. Only MX-routing
connectors are judged; through a smart host the domain's MX is not the next hop.
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.exception
import dns.resolver
import dns.reversename

from edgeward.config.schema import Config, SendConnectorConfig
from edgeward.delivery.mta_sts import parse_txt
from edgeward.delivery.tlspolicy import combine
from edgeward.harden.findings import Finding
from edgeward.harden.host import Notes, Step

__all__ = ["check_dns", "dns_steps", "honours_sts"]

_ABSENT = (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)


class _Unanswered(Exception):
    pass


def _resolver(config: Config) -> dns.resolver.Resolver:
    d = config.dns
    resolver = dns.resolver.Resolver(configure=not d.servers)
    if d.servers:
        resolver.nameservers = list(d.servers)
    resolver.port = d.port
    resolver.lifetime = d.timeout
    return resolver


def _query(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> list[str]:
    try:
        answer = resolver.resolve(name, rdtype)
    except _ABSENT:
        return []
    except dns.exception.DNSException as exc:
        raise _Unanswered(f"{name} {rdtype}: {exc.__class__.__name__}") from None
    if rdtype == "TXT":
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
    if rdtype == "MX":
        return [r.exchange.to_text().rstrip(".").lower() for r in answer]
    return [r.to_text().rstrip(".").lower() for r in answer]


def _has_txt(resolver: dns.resolver.Resolver, name: str, prefix: str) -> bool:
    return any(t.lower().startswith(prefix.lower()) for t in _query(resolver, name, "TXT"))


def _domain(resolver: dns.resolver.Resolver, domain: str, names: set[str]) -> Iterator[Finding]:
    mx = _query(resolver, domain, "MX")
    if not mx:
        yield Finding("EW-DNS-001", f"{domain} has no MX record")
    elif not names.intersection(mx):
        yield Finding(
            "EW-DNS-001", f"{domain} MX {', '.join(sorted(mx))}; this gateway is {', '.join(sorted(names))}"
        )
    if not _has_txt(resolver, domain, "v=spf1"):
        yield Finding("EW-DNS-002", domain)
    if not _has_txt(resolver, f"_dmarc.{domain}", "v=DMARC1"):
        yield Finding("EW-DNS-003", domain)
    if not _has_txt(resolver, f"_mta-sts.{domain}", "v=STSv1"):
        yield Finding("EW-DNS-004", domain)
    if not _has_txt(resolver, f"_smtp._tls.{domain}", "v=TLSRPTv1"):
        yield Finding("EW-DNS-005", domain)


def _reverse(resolver: dns.resolver.Resolver, hostname: str) -> Iterator[Finding]:
    addresses = _query(resolver, hostname, "A") + _query(resolver, hostname, "AAAA")
    if not addresses:
        yield Finding("EW-DNS-006", f"{hostname} has no A or AAAA record")
    for address in addresses:
        ptr = _query(resolver, dns.reversename.from_address(address).to_text(), "PTR")
        if hostname.lower() not in ptr:
            shown = ", ".join(ptr) or "no PTR record"
            yield Finding("EW-DNS-006", f"{address} ({hostname}) reverses to {shown}")


def _sts_routed(config: Config) -> dict[str, list[SendConnectorConfig]]:
    """Explicit domains of MX-routing send connectors, and the connectors that route each."""
    out: dict[str, list[SendConnectorConfig]] = {}
    for sc in config.send_connectors:
        if not sc.dns_routing:
            continue  # a smart host is the next hop, not the domain's MX: its policy does not apply
        for space in sc.address_spaces:
            if not space.domain.startswith("*"):
                out.setdefault(space.domain.lower(), []).append(sc)
    return out


def honours_sts(sc: SendConnectorConfig) -> bool:
    """Whether the connector sends to an MX as an ``enforce`` policy asks (tlspolicy decides)."""
    level = combine(sc.tls, sts_mode="enforce" if sc.mta_sts else None).level
    return level in ("verify_hostname", "dane")


def _outbound_sts(
    resolver: dns.resolver.Resolver, domain: str, connectors: list[SendConnectorConfig]
) -> Iterator[Finding]:
    # The TXT record is enough to know the domain asks for MTA-STS; its mode is in the policy
    # file over HTTPS, which analyse does not fetch, so the strictest (enforce) is assumed.
    policy_id = parse_txt(_query(resolver, f"_mta-sts.{domain}", "TXT"))
    if policy_id is None:
        return
    for sc in connectors:
        if not honours_sts(sc):
            sends = f"tls = {sc.tls!r}, mta_sts = {str(sc.mta_sts).lower()}"
            yield Finding(
                "EW-TLS-004",
                f"send connector {sc.name}: {domain} publishes MTA-STS (id {policy_id}), sent with {sends}",
            )


def dns_steps(config: Config, notes: Notes) -> list[Step]:
    """One step per accepted domain, the banner name's reverse DNS, one per explicitly routed domain."""
    resolver = _resolver(config)
    hostname = config.server.hostname.lower()
    names = {hostname, *(rc.fqdn.lower() for rc in config.receive_connectors if rc.fqdn)}
    domains = [d for d in config.accepted_domains if not d.startswith("*")]

    def one(domain: str) -> list[Finding]:
        try:
            return list(_domain(resolver, domain, names))
        except _Unanswered as exc:
            notes.not_checked.append(f"DNS of {domain}: {exc}")
            return []

    def reverse() -> list[Finding]:
        try:
            found = list(_reverse(resolver, hostname))
        except _Unanswered as exc:
            notes.not_checked.append(f"reverse DNS of {hostname}: {exc}")
            found = []
        via = ", ".join(config.dns.servers) or "/etc/resolv.conf"
        notes.checked.append(f"DNS of {len(domains)} accepted domain(s) and {hostname} via {via}")
        return found

    routed = _sts_routed(config)

    def outbound(domain: str) -> list[Finding]:
        try:
            return list(_outbound_sts(resolver, domain, routed[domain]))
        except _Unanswered as exc:
            notes.not_checked.append(f"MTA-STS of {domain} (routed by a send connector): {exc}")
            return []

    if routed:
        notes.checked.append(f"MTA-STS records of {len(routed)} domain(s) routed by send connectors")

    steps: list[Step] = [(f"DNS of {d}", lambda d=d: one(d)) for d in domains]  # type: ignore[misc]
    steps.append((f"reverse DNS of {hostname}", reverse))
    steps += [(f"MTA-STS of {d}", lambda d=d: outbound(d)) for d in routed]  # type: ignore[misc]
    return steps


def check_dns(config: Config, notes: Notes) -> list[Finding]:
    return [f for _, run in dns_steps(config, notes) for f in run()]
