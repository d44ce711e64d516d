"""The DNS checks of ``harden analyse``: the accepted domains as the world sees them.

Queries go through the resolvers the gateway itself uses (``dns.servers``, ``dns.port``), so a
split-horizon setup is judged by what the gateway sees; for the public view, list a public
resolver there or run analyse against a copy of the configuration that does. A resolver that
does not answer makes the check "not checked", never a finding: a finding must be a fact about
the published records. Wildcard accepted domains (``*.example.org``) have no records of their
own and are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.exception
import dns.resolver
import dns.reversename

from edgeward.config.schema import Config
from edgeward.harden.findings import Finding
from edgeward.harden.host import Notes, Step

__all__ = ["check_dns", "dns_steps"]

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


def dns_steps(config: Config, notes: Notes) -> list[Step]:
    """One step per accepted domain, then the banner name's reverse DNS."""
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

    steps: list[Step] = [(f"DNS of {d}", lambda d=d: one(d)) for d in domains]  # type: ignore[misc]
    return [*steps, (f"reverse DNS of {hostname}", reverse)]


def check_dns(config: Config, notes: Notes) -> list[Finding]:
    return [f for _, run in dns_steps(config, notes) for f in run()]
