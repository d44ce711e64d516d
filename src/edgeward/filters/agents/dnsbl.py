"""DNS list providers (DNSBL/DNSWL): the question for an address and what its answer means.

A provider is asked for ``A`` records at the client's reversed address under its zone
(``2.0.0.127.zen.example`` for 127.0.0.2; the 32 reversed nibbles for IPv6). What counts:

- NXDOMAIN or no record: not listed, the ordinary answer;
- an answer outside 127.0.0.0/8, or in 127.255.255.0/24 (Spamhaus's "query refused" and
  "rate limited" codes), is an error answer: ``DNSBL_ERROR``, never a listing, since it says
  nothing about the client (a misconfigured, wildcarded or over-quota zone answers so);
- SERVFAIL, a timeout, or the lookup deadline passing: ``DNSBL_TEMPERROR``, never a listing;
- otherwise the provider's ``match`` rule decides: any answer, one of the listed
  ``addresses``, or a last octet sharing a bit with ``bitmask``.

Every provider is asked at once and the whole set is bounded by one deadline, so a slow zone
costs the session at most ``lookup_timeout``, however many providers are configured.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from edgeward.config.schema import DnsListProvider
from edgeward.ports import DnsError, DnsFailure, DnsLookup

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_ERROR_ANSWERS = ipaddress.ip_network("127.255.255.0/24")


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """What one provider said about one address."""

    provider: DnsListProvider
    status: str  # "listed", "clean", "error" (an error answer), "temperror"
    answers: tuple[str, ...] = ()
    detail: str = ""

    @property
    def listed(self) -> bool:
        return self.status == "listed"

    def as_dict(self) -> dict[str, object]:
        return {
            "provider": self.provider.name,
            "zone": self.provider.zone,
            "status": self.status,
            "answers": list(self.answers),
            "detail": self.detail,
        }


def query_name(ip: str, zone: str) -> str:
    """The name to ask ``zone`` about ``ip``: reversed octets, or reversed nibbles for IPv6."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    reverse = address.reverse_pointer.removesuffix(".in-addr.arpa").removesuffix(".ip6.arpa")
    return f"{reverse}.{zone}"


def classify(provider: DnsListProvider, answers: Sequence[str]) -> ProviderResult:
    """The meaning of the ``A`` records a provider returned."""
    if not answers:
        return ProviderResult(provider, "clean")
    hits: list[str] = []
    for answer in answers:
        try:
            address = ipaddress.IPv4Address(answer)
        except ValueError:
            return ProviderResult(provider, "error", tuple(answers), f"answer {answer!r} is not an address")
        if address not in _LOOPBACK or address in _ERROR_ANSWERS:
            return ProviderResult(provider, "error", tuple(answers), f"error answer {answer}")
        if _matches(provider, address):
            hits.append(answer)
    if hits:
        return ProviderResult(provider, "listed", tuple(answers), ", ".join(hits))
    return ProviderResult(provider, "clean", tuple(answers), "answer not matched")


def _matches(provider: DnsListProvider, address: ipaddress.IPv4Address) -> bool:
    if provider.match == "any":
        return True
    if provider.match == "bitmask":
        return bool(int(address) & 0xFF & provider.bitmask)
    return str(address) in provider.addresses


async def ask(dns: DnsLookup, provider: DnsListProvider, ip: str) -> ProviderResult:
    """One provider's answer for ``ip``; never raises for a DNS fault."""
    name = query_name(ip, provider.zone)
    try:
        answer = await dns.query(name, "A")
    except DnsError as exc:
        if exc.failure is DnsFailure.NXDOMAIN:
            return ProviderResult(provider, "clean")
        if exc.failure is DnsFailure.INVALID:
            return ProviderResult(provider, "error", (), str(exc))
        return ProviderResult(provider, "temperror", (), f"{exc.failure.value}: {exc}")
    return classify(provider, answer.records)


async def ask_all(
    dns: DnsLookup, providers: Sequence[DnsListProvider], ip: str, limit: float
) -> list[ProviderResult]:
    """Every provider at once, in priority order; those not done within ``limit`` seconds are temperrors."""
    ordered = sorted(providers, key=lambda p: p.priority)
    if not ordered:
        return []
    tasks = [asyncio.ensure_future(ask(dns, p, ip)) for p in ordered]
    try:
        _, pending = await asyncio.wait(tasks, timeout=limit)
    finally:
        for task in tasks:
            task.cancel()
    if pending:
        # Let the cancelled lookups finish cancelling, so none outlives the session's question.
        await asyncio.gather(*pending, return_exceptions=True)
    results: list[ProviderResult] = []
    for provider, task in zip(ordered, tasks, strict=True):
        if task.cancelled():
            results.append(ProviderResult(provider, "temperror", (), f"no answer within {limit:g}s"))
        elif (exc := task.exception()) is not None:
            # A bug in a resolver adapter: report it, but never as a listing.
            results.append(ProviderResult(provider, "temperror", (), f"lookup failed: {exc!r}"))
        else:
            results.append(task.result())
    return results
