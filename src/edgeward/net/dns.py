"""The DNS adapter: :class:`edgeward.ports.Resolver` implemented with dnspython's async resolver.

This module owns the translation of DNS answers into what mail routing needs (RFC 5321 §5.1):
MX hosts sorted by preference, shuffled within equal preference so load spreads; the implicit
MX (the domain itself) when a domain has addresses but no MX; the null MX ``0 .`` of RFC 7505.
Every dnspython exception is translated into :class:`~edgeward.ports.ResolverError`:
``permanent`` for NXDOMAIN, a null MX or a domain with neither MX nor address records;
transient for SERVFAIL, time-outs and unreachable servers, which must be retried.

Security: names come from mail envelopes, so they are checked before they reach dnspython and
every query has a time limit; answers are only ever used as host names and addresses.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver
import dns.reversename

from edgeward.ports import MxHost, ResolverError

__all__ = ["DnsResolver", "NullMxError"]


class NullMxError(ResolverError):
    """The domain publishes a null MX (RFC 7505): it accepts no mail at all."""

    def __init__(self, domain: str) -> None:
        super().__init__(f"{domain} does not accept mail (null MX)", permanent=True)
        self.domain = domain


class DnsResolver:
    """Asynchronous DNS lookups with a per-query time limit.

    ``nameservers`` overrides ``/etc/resolv.conf`` (as Exchange's ExternalDNSServers does); a
    test points it at a local authoritative server on a high ``port``.
    """

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        port: int = 53,
        timeout: float = 5.0,
        *,
        rng: random.Random | None = None,
    ) -> None:
        if nameservers:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = list(nameservers)
        else:
            self._resolver = dns.asyncresolver.Resolver()
        self._resolver.port = port
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout
        self._rng = rng or random.Random()  # load spreading, not security

    async def _query(self, name: str, rdtype: str, *, empty_ok: bool = True) -> list[Any]:
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError) as exc:
            raise ResolverError(f"invalid name {name!r}: {exc}", permanent=True) from None
        try:
            answer = await self._resolver.resolve(qname, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise ResolverError(f"{name}: no such domain (NXDOMAIN)", permanent=True) from None
        except dns.resolver.NoAnswer:
            if empty_ok:
                return []
            raise ResolverError(f"{name}: no {rdtype} record", permanent=True) from None
        except dns.resolver.YXDOMAIN:
            raise ResolverError(f"{name}: name too long after substitution", permanent=True) from None
        except dns.resolver.LifetimeTimeout:
            raise ResolverError(f"{name}/{rdtype}: DNS timeout", permanent=False) from None
        except dns.resolver.NoNameservers as exc:
            # Every server answered SERVFAIL or REFUSED, or could not be reached.
            raise ResolverError(f"{name}/{rdtype}: DNS server failure ({exc})", permanent=False) from None
        except dns.exception.DNSException as exc:
            raise ResolverError(f"{name}/{rdtype}: DNS error ({exc})", permanent=False) from None
        return list(answer)

    async def mx(self, domain: str) -> Sequence[MxHost]:
        records: list[MxHost] = []
        for rdata in await self._query(domain, "MX"):
            host = rdata.exchange.to_text(omit_final_dot=True).lower()
            records.append(MxHost(int(rdata.preference), "" if host == "." else host))
        if not records:
            # RFC 5321 §5.1: no MX means the domain itself is the one, implicit, MX, provided it
            # has an address; otherwise the domain cannot receive mail.
            if not await self.addresses(domain):
                raise ResolverError(f"{domain}: no MX and no address records", permanent=True)
            return [MxHost(0, domain.rstrip(".").lower())]
        # RFC 7505 §3: a single MX with an empty target ("." becomes "" here) is a null MX.
        if any(r.host == "" for r in records):
            raise NullMxError(domain)
        shuffled = records[:]
        self._rng.shuffle(shuffled)
        # sorted() is stable, so equal preferences keep their shuffled order (RFC 5321 §5.1).
        return sorted(shuffled, key=lambda r: r.preference)

    async def addresses(self, host: str) -> Sequence[str]:
        """IPv6 and IPv4 addresses of ``host``; an IP literal is returned as it is."""
        try:
            return [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            pass
        v6: list[str] = []
        v4: list[str] = []
        errors: list[ResolverError] = []
        for rdtype, out in (("AAAA", v6), ("A", v4)):
            try:
                out.extend(r.to_text() for r in await self._query(host, rdtype))
            except ResolverError as exc:
                errors.append(exc)
        if not v6 and not v4 and errors:
            # A transient failure of either lookup makes the whole answer transient.
            raise next((e for e in errors if not e.permanent), errors[0])
        # IPv4 first: an edge host's IPv6 reachability is not assumed.
        return v4 + v6

    async def ptr(self, ip: str) -> Sequence[str]:
        try:
            name = dns.reversename.from_address(ip).to_text()
        except (dns.exception.SyntaxError, ValueError) as exc:
            raise ResolverError(f"not an IP address: {ip!r} ({exc})", permanent=True) from None
        return [r.target.to_text(omit_final_dot=True).lower() for r in await self._query(name, "PTR")]

    async def txt(self, name: str) -> Sequence[str]:
        # TXT data is a list of strings that concatenate (RFC 7208 §3.3).
        return [b"".join(r.strings).decode("utf-8", "replace") for r in await self._query(name, "TXT")]
