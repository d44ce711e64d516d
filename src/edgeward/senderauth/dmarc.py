"""DMARC (RFC 7489): whose policy covers the From domain, whether SPF or DKIM aligns with it, and
which policy the domain owner asks for. What to *do* with that policy is the policy layer's call.

Order of work, as RFC 7489 §6.6 has it:

1. The author domain comes from the single From field (§6.6.1). No From, several From fields,
   an address that cannot be read, or authors of different domains are a ``fail`` with the
   strictest disposition (``reject``): a message that hides its author must not slip past a
   domain's policy by being malformed, which is the classic DMARC bypass.
2. The record is asked at ``_dmarc.<author domain>``, then at ``_dmarc.<organisational
   domain>`` (§6.6.3). The organisational domain comes from the Public Suffix List shipped
   inside the ``publicsuffixlist`` package (:class:`OrganizationalDomains`); nothing is
   downloaded at run time. A DNS time-out or server failure is ``temperror``; no record is
   ``none``; several records are ``none`` too (§6.6.3 step 5); a record without a valid ``p=``
   is ``permerror`` unless it has a ``rua=``, which makes it ``p=none`` (§6.3).
3. DKIM aligns if a passing signature's ``d=`` equals the author domain (strict, ``adkim=s``)
   or shares its organisational domain (relaxed, the default); SPF likewise with the domain SPF
   checked (§3.1). Either aligned pass makes DMARC ``pass``. If neither passed but an aligned
   check ended in temperror, the result is ``temperror``: a retry might pass.
4. On ``fail``, the policy is ``p=``, or ``sp=`` when the record was found at the organisational
   domain for a subdomain. ``pct=`` samples (§6.6.4): outside the sample the policy is applied
   one step softer (reject to quarantine, quarantine to none). The random source is injected so
   a test, or a replay, draws the same sample.
"""

from __future__ import annotations

import enum
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from email.utils import getaddresses

from publicsuffixlist import PublicSuffixList

from edgeward.ports import DnsError, DnsFailure, DnsLookup
from edgeward.senderauth.dkim import DkimResult, DkimStatus
from edgeward.suffixes import public_suffix_list

__all__ = [
    "DmarcChecker",
    "DmarcRecord",
    "DmarcRecordError",
    "DmarcResult",
    "DmarcStatus",
    "OrganizationalDomains",
    "Policy",
    "parse_record",
]

#: A DMARC record is a few hundred bytes; anything far longer is not one we will parse.
MAX_RECORD = 2048
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)$")


class Policy(enum.Enum):
    """Ordered from soft to strict; :meth:`softer` is the pct fallback of RFC 7489 §6.6.4."""

    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"

    def softer(self) -> Policy:
        return {Policy.REJECT: Policy.QUARANTINE}.get(self, Policy.NONE)


class DmarcStatus(enum.Enum):
    PASS = "pass"  # noqa: S105 (a result word, not a secret)
    FAIL = "fail"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


class DmarcRecordError(ValueError):
    """A ``v=DMARC1`` record that cannot be used."""


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    policy: Policy
    subdomain_policy: Policy | None = None
    pct: int = 100
    strict_dkim: bool = False
    strict_spf: bool = False
    rua: tuple[str, ...] = ()


def parse_record(text: str) -> DmarcRecord:
    """The tags of a record (RFC 7489 §6.3); bad optional tags fall back to their defaults."""
    if len(text) > MAX_RECORD:
        raise DmarcRecordError(f"record over {MAX_RECORD} bytes")
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), value.strip())
    if re.sub(r"\s+", "", text.split(";", 1)[0]) != "v=DMARC1":
        raise DmarcRecordError("record does not start with v=DMARC1")
    rua = tuple(u.strip() for u in tags.get("rua", "").split(",") if u.strip().lower().startswith("mailto:"))
    policies = {p.value: p for p in Policy}
    policy = policies.get(tags.get("p", "").lower())
    if policy is None:
        # §6.3: without a valid p=, a record with a valid rua= counts as p=none; else it is unusable.
        if not rua:
            raise DmarcRecordError(f"no valid p= tag ({tags.get('p', 'missing')!r})")
        policy = Policy.NONE
    subdomain = policies.get(tags.get("sp", "").lower())
    try:
        pct = int(tags.get("pct", "100"))
    except ValueError:
        pct = 100
    return DmarcRecord(
        policy=policy,
        subdomain_policy=subdomain,
        pct=pct if 0 <= pct <= 100 else 100,
        strict_dkim=tags.get("adkim", "r").lower() == "s",
        strict_spf=tags.get("aspf", "r").lower() == "s",
        rua=rua,
    )


class OrganizationalDomains:
    """The organisational domain of a name (RFC 7489 §3.2) from the packaged Public Suffix List.

    The list is the process's one copy (``edgeward.suffixes``) unless one is given.
    """

    def __init__(self, psl: PublicSuffixList | None = None) -> None:
        self._psl = psl or public_suffix_list()

    def __call__(self, domain: str) -> str:
        domain = domain.rstrip(".").lower()
        # A public suffix itself (or a name the list does not know) is its own organisation.
        return self._psl.privatesuffix(domain) or domain


@dataclass(frozen=True, slots=True)
class DmarcResult:
    """The DMARC verdict: ``policy`` is what the domain asks for on failure, ``applied`` what
    remains after ``pct`` sampling (NONE when the message passed or no policy exists)."""

    status: DmarcStatus
    from_domain: str = ""
    policy_domain: str = ""
    record: DmarcRecord | None = None
    policy: Policy = Policy.NONE
    applied: Policy = Policy.NONE
    sampled_out: bool = False
    dkim_aligned: bool = False
    spf_aligned: bool = False
    reason: str = ""
    findings_extra: tuple[str, ...] = ()

    def findings(self) -> tuple[str, ...]:
        names = [f"DMARC_{self.status.name}"]
        if self.status is DmarcStatus.FAIL:
            names.append(f"DMARC_POLICY_{self.applied.name}")
        return (*names, *self.findings_extra)


def author_domain(from_fields: Sequence[str]) -> str:
    """The one author domain of a message, or raise :class:`ValueError` saying why there is none."""
    if len(from_fields) != 1:
        raise ValueError(f"{len(from_fields)} From header fields")
    addresses = getaddresses([from_fields[0]])
    domains = set()
    for _name, address in addresses:
        local, at, domain = address.rpartition("@")
        if not at or not local:
            raise ValueError(f"unreadable From address {address!r}")
        try:
            ascii_domain = domain.rstrip(".").encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise ValueError(f"From domain {domain!r} is not a domain name") from None
        if not _HOSTNAME.match(ascii_domain):
            raise ValueError(f"From domain {domain!r} is not a domain name")
        if "@" + domain.lower() not in from_fields[0].lower():
            # The parser repaired the field ("a@exa mple.com" reads as example.com); a mail
            # reader may show something else, so the author is ambiguous.
            raise ValueError(f"From field does not name {domain!r} as written")
        domains.add(ascii_domain)
    if len(domains) != 1:
        raise ValueError("no From address" if not domains else "authors of several domains in From")
    return domains.pop()


class DmarcChecker:
    """Evaluates DMARC for one message at a time; safe to share between sessions."""

    def __init__(
        self,
        dns: DnsLookup,
        org_domains: OrganizationalDomains | None = None,
        *,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self._dns = dns
        self._org = org_domains or OrganizationalDomains()
        self._random = rng or random.SystemRandom().random

    async def _records(self, domain: str) -> list[str] | None:
        """The v=DMARC1 records at ``_dmarc.<domain>``; None for NXDOMAIN (nothing there)."""
        try:
            answer = await self._dns.query(f"_dmarc.{domain}", "TXT")
        except DnsError as exc:
            if exc.failure in (DnsFailure.NXDOMAIN, DnsFailure.INVALID):
                return None
            raise
        # §6.6.3 step 3: keep only records that start with "v=DMARC1".
        return [r for r in answer.records if re.sub(r"\s+", "", r).startswith("v=DMARC1")]

    async def _discover(self, from_domain: str, org: str) -> tuple[str, list[str]]:
        found = await self._records(from_domain)
        if found:
            return from_domain, found
        if org != from_domain:
            found = await self._records(org)
            if found:
                return org, found
        return from_domain, []

    def _aligned(self, domain: str, from_domain: str, strict: bool) -> bool:
        domain = domain.rstrip(".").lower()
        if strict:
            return domain == from_domain
        return bool(domain) and self._org(domain) == self._org(from_domain)

    async def check(
        self,
        from_fields: Sequence[str],
        dkim: DkimResult | None,
        spf_result: str,
        spf_domain: str,
    ) -> DmarcResult:
        """``from_fields`` are the values of every From field; ``spf_result`` and ``spf_domain`` the
        SPF result and the domain it was for (MAIL FROM's, or HELO's for a null sender)."""
        try:
            from_domain = author_domain(from_fields)
        except ValueError as exc:
            return DmarcResult(
                DmarcStatus.FAIL,
                policy=Policy.REJECT,
                applied=Policy.REJECT,
                reason=str(exc),
                findings_extra=("DMARC_FROM_INVALID",),
            )
        org = self._org(from_domain)
        try:
            policy_domain, records = await self._discover(from_domain, org)
        except DnsError as exc:
            return DmarcResult(DmarcStatus.TEMPERROR, from_domain, reason=f"record lookup failed: {exc}")
        if len(records) != 1:
            reason = "no DMARC record" if not records else f"{len(records)} DMARC records"
            return DmarcResult(DmarcStatus.NONE, from_domain, policy_domain, reason=reason)
        try:
            record = parse_record(records[0])
        except DmarcRecordError as exc:
            return DmarcResult(DmarcStatus.PERMERROR, from_domain, policy_domain, reason=str(exc))

        signatures = dkim.signatures if dkim else ()
        dkim_aligned = any(
            s.status is DkimStatus.PASS and self._aligned(s.domain, from_domain, record.strict_dkim)
            for s in signatures
        )
        spf_result = spf_result.strip().lower()
        spf_matches = self._aligned(spf_domain, from_domain, record.strict_spf)
        spf_aligned = spf_result == "pass" and spf_matches
        base = DmarcResult(
            DmarcStatus.PASS,
            from_domain,
            policy_domain,
            record,
            dkim_aligned=dkim_aligned,
            spf_aligned=spf_aligned,
        )
        if dkim_aligned or spf_aligned:
            return base
        transient = (spf_result == "temperror" and spf_matches) or any(
            s.status is DkimStatus.TEMPERROR and self._aligned(s.domain, from_domain, record.strict_dkim)
            for s in signatures
        )
        if transient:
            return replace(base, status=DmarcStatus.TEMPERROR, reason="an aligned check failed temporarily")
        policy = record.policy
        if policy_domain != from_domain and record.subdomain_policy is not None:
            policy = record.subdomain_policy
        # §6.6.4: a message outside the pct sample gets the next softer policy.
        sampled_out = record.pct < 100 and self._random() * 100 >= record.pct
        applied = policy.softer() if sampled_out else policy
        return DmarcResult(
            DmarcStatus.FAIL,
            from_domain,
            policy_domain,
            record,
            policy=policy,
            applied=applied,
            sampled_out=sampled_out,
            reason="neither DKIM nor SPF passed aligned with the From domain",
        )
