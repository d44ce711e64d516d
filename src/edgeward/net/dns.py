"""The DNS adapter: :class:`edgeward.ports.Resolver` implemented with dnspython's async resolver.

This module owns the translation of DNS answers into what mail routing needs (RFC 5321 §5.1):
MX hosts sorted by preference, shuffled within equal preference so load spreads; the implicit
MX (the domain itself) when a domain has addresses but no MX; the null MX ``0 .`` of RFC 7505.
Every dnspython exception is translated into :class:`~edgeward.ports.ResolverError`:
``permanent`` for NXDOMAIN, a null MX or a domain with neither MX nor address records;
transient for SERVFAIL, time-outs and unreachable servers, which must be retried.

It also owns the DNSSEC facts DANE for SMTP needs (RFC 7672 §2.2): the TLSA records of an MX
host (:meth:`DnsResolver.tlsa`) and whether the MX RRset and the MX host's address records were
authenticated (:meth:`DnsResolver.mx_secure`, :meth:`DnsResolver.host_secure`). These queries
set the DO bit (RFC 3225) and read the AD flag of the answer (RFC 4035 §3.2.3); the resolver
does the validation, and a validating resolver answers SERVFAIL for bogus data, which is a
transient failure here like any other server failure.

Security: names come from mail envelopes, so they are checked before they reach dnspython and
every query has a time limit; answers are only ever used as host names and addresses. The AD
flag is believed only because the administrator chose the resolvers (``[dns] servers``, see
:class:`edgeward.config.schema.DnsConfig`): anyone on the path to a resolver, or the resolver
itself, can set it, so DANE is only as sound as that choice (a validating resolver on this
host, or one reached over a trusted path). Nothing here validates signatures itself.
"""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename

from edgeward.ports import DnsAnswer, DnsError, DnsFailure, MxHost, ResolverError

__all__ = ["ANSWER_CACHE_SIZE", "DnsResolver", "NullMxError", "TlsaAnswer", "TlsaRecord"]

#: Answers kept per resolver, least recently used dropped first: a few hundred bytes each.
ANSWER_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class TlsaRecord:
    """One TLSA record (RFC 6698 §2.1): certificate usage, selector, matching type and data."""

    usage: int
    selector: int
    mtype: int
    data: bytes


@dataclass(frozen=True, slots=True)
class TlsaAnswer:
    """The TLSA RRset of a service, empty when it does not exist, and whether DNSSEC vouched for it.

    ``secure`` covers a denial too: an authenticated NXDOMAIN or NODATA is a proof that the
    service publishes no TLSA records, an unauthenticated one proves nothing.
    """

    records: tuple[TlsaRecord, ...]
    secure: bool


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
        self._resolver = _make_resolver(nameservers, port, timeout)
        # The AD bit in the query asks a validating resolver to say whether it validated the
        # answer (RFC 6840 §5.7) without the DO bit's signatures; without it the AD flag of
        # DnsAnswer would always be false.
        self._resolver.flags = dns.flags.RD | dns.flags.AD
        # Answers are kept for their TTL (negative ones for the zone's SOA minimum, RFC 2308),
        # as any stub in front of a resolver keeps them: every message asks the same DNSBL,
        # SPF, DKIM key and DMARC names again, and a query costs far more CPU than a lookup.
        # Server failures and time-outs are never kept. The DNSSEC resolver below keeps none.
        self._resolver.cache = dns.resolver.LRUCache(ANSWER_CACHE_SIZE)
        # In front of it, the port's own answers by the question as asked, until dnspython's
        # expiration of the same answer: a hit in dnspython's cache still costs a name parse,
        # a resolution object and the answer's conversion, about 30 us, and a message asks
        # seven or so questions (both DNSBLs, SPF, the DKIM key, DMARC, the client's name).
        self._kept: dict[tuple[str, str], tuple[DnsAnswer | tuple[str, DnsFailure], float]] = {}
        # A second resolver for the DNSSEC questions, so the ordinary lookups keep sending
        # plain queries and getting the smaller answers without signatures.
        self._dnssec = _make_resolver(nameservers, port, timeout)
        self._dnssec.use_edns(0, dns.flags.DO, 1232)
        self._rng = rng or random.Random()  # load spreading, not security

    async def _query(self, name: str, rdtype: str, *, empty_ok: bool = True) -> list[Any]:
        qname = _qname(name)
        try:
            answer = await self._resolver.resolve(qname, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise ResolverError(f"{name}: no such domain (NXDOMAIN)", permanent=True) from None
        except dns.resolver.NoAnswer:
            if empty_ok:
                return []
            raise ResolverError(f"{name}: no {rdtype} record", permanent=True) from None
        except dns.exception.DNSException as exc:
            raise _failure(name, rdtype, exc) from None
        return list(answer)

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        """One question (:class:`edgeward.ports.DnsLookup`): the records as presentation strings."""
        key = (name, rdtype)
        kept = self._kept.get(key)
        if kept is not None:
            result, expiration = kept
            if time.time() < expiration:
                if isinstance(result, DnsAnswer):
                    return result
                raise DnsError(*result)
            del self._kept[key]
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError) as exc:
            raise DnsError(f"invalid name {name!r}: {exc}", DnsFailure.INVALID) from None
        if qname == dns.name.root:
            # An empty name (an empty domain from an envelope) would ask about the root: input
            # to refuse, not a server failure to retry.
            raise DnsError(f"invalid name {name!r}: empty", DnsFailure.INVALID)
        try:
            answer = await self._resolver.resolve(qname, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            denial = (f"{name}: no such domain (NXDOMAIN)", DnsFailure.NXDOMAIN)
            # Kept as long as dnspython keeps it (the zone's negative TTL, RFC 2308), which it
            # does under the type ANY, whatever type was asked.
            cached = self._resolver.cache.get((qname, dns.rdatatype.ANY, dns.rdataclass.IN))
            if cached is not None:
                self._keep(key, denial, cached.expiration)
            raise DnsError(*denial) from None
        except dns.resolver.YXDOMAIN:
            raise DnsError(f"{name}: name too long after substitution", DnsFailure.INVALID) from None
        except dns.resolver.LifetimeTimeout:
            raise DnsError(f"{name}/{rdtype}: DNS timeout", DnsFailure.TIMEOUT) from None
        except dns.exception.DNSException as exc:
            raise DnsError(f"{name}/{rdtype}: DNS server failure ({exc})", DnsFailure.SERVFAIL) from None
        result = DnsAnswer(tuple(_presentation(r) for r in answer), _authenticated(answer.response))
        self._keep(key, result, answer.expiration)
        return result

    def _keep(
        self, key: tuple[str, str], result: DnsAnswer | tuple[str, DnsFailure], expiration: float
    ) -> None:
        if len(self._kept) >= ANSWER_CACHE_SIZE:
            del self._kept[next(iter(self._kept))]  # the oldest question
        self._kept[key] = (result, expiration)

    async def _secure_query(self, name: str, rdtype: str) -> tuple[list[Any], bool]:
        """The records of ``name`` (none for NXDOMAIN or NODATA) and the answer's AD flag."""
        qname = _qname(name)
        try:
            answer = await self._dnssec.resolve(qname, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            responses: dict[dns.name.Name, dns.message.Message] = exc.kwargs.get("responses") or {}
            return [], bool(responses) and all(_authenticated(r) for r in responses.values())
        except dns.exception.DNSException as exc:
            # A validating resolver answers SERVFAIL for bogus data (RFC 4035 §5.5): transient,
            # so mail is deferred, never sent without the protection the records would give.
            raise _failure(name, rdtype, exc) from None
        return list(answer), _authenticated(answer.response)

    async def tlsa(self, host: str, port: int) -> TlsaAnswer:
        """The TLSA records of SMTP on ``host``:``port``, at ``_<port>._tcp.<host>`` (RFC 7672 §2.2.3)."""
        name = f"_{int(port)}._tcp.{host.rstrip('.')}."
        rdatas, secure = await self._secure_query(name, "TLSA")
        records = tuple(
            TlsaRecord(int(r.usage), int(r.selector), int(r.mtype), bytes(r.cert)) for r in rdatas
        )
        return TlsaAnswer(records, secure)

    async def mx_secure(self, domain: str) -> bool:
        """Whether the MX RRset of ``domain`` is DNSSEC-authenticated (RFC 7672 §2.2.1).

        Without MX records the domain is its own MX host (RFC 5321 §5.1), so the authenticated
        denial of the MX RRset and the domain's own address records must both be secure.
        """
        rdatas, secure = await self._secure_query(domain, "MX")
        if rdatas or not secure:
            return secure
        return await self.host_secure(domain)

    async def host_secure(self, host: str) -> bool:
        """Whether the A and AAAA answers for ``host`` are both DNSSEC-authenticated (RFC 7672 §2.2.2).

        An IP literal was not looked up at all, so it is never secure.
        """
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            pass
        else:
            return False
        for rdtype in ("A", "AAAA"):
            # Either answer may be the one an attacker would forge, so both must be secure.
            _, secure = await self._secure_query(host, rdtype)
            if not secure:
                return False
        return True

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


def _make_resolver(
    nameservers: Sequence[str] | None, port: int, timeout: float
) -> dns.asyncresolver.Resolver:
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = list(nameservers)
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.port = port
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


def _presentation(rdata: Any) -> str:
    """The string form :class:`edgeward.ports.DnsAnswer` promises for one record."""
    rdtype = rdata.rdtype
    if rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rdtype == dns.rdatatype.MX:
        return f"{int(rdata.preference)} {rdata.exchange.to_text(omit_final_dot=True).lower()}"
    if rdtype in (dns.rdatatype.PTR, dns.rdatatype.CNAME, dns.rdatatype.NS):
        return str(rdata.target.to_text(omit_final_dot=True).lower())
    return str(rdata.to_text())


def _qname(name: str) -> dns.name.Name:
    try:
        return dns.name.from_text(name)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ResolverError(f"invalid name {name!r}: {exc}", permanent=True) from None


def _authenticated(response: dns.message.Message | None) -> bool:
    return response is not None and bool(response.flags & dns.flags.AD)


def _failure(name: str, rdtype: str, exc: dns.exception.DNSException) -> ResolverError:
    """The ResolverError for a dnspython failure other than NXDOMAIN and NODATA."""
    if isinstance(exc, dns.resolver.YXDOMAIN):
        return ResolverError(f"{name}: name too long after substitution", permanent=True)
    if isinstance(exc, dns.resolver.LifetimeTimeout):
        return ResolverError(f"{name}/{rdtype}: DNS timeout", permanent=False)
    if isinstance(exc, dns.resolver.NoNameservers):
        # Every server answered SERVFAIL or REFUSED, or could not be reached.
        return ResolverError(f"{name}/{rdtype}: DNS server failure ({exc})", permanent=False)
    return ResolverError(f"{name}/{rdtype}: DNS error ({exc})", permanent=False)
