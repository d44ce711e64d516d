"""SPF (RFC 7208): is the client IP allowed to send for the MAIL FROM or HELO domain?

This module owns the evaluation of one SPF question and its result. The record language
(mechanisms, modifiers, macros, ``include``/``redirect``, ``exp=``, the processing limits of
§4.6.4) is pyspf's, the reference implementation the OpenSPF suite was written against; what
this module adds is the DNS path and the bounds around it:

* every DNS question goes through the :class:`edgeward.ports.DnsLookup` port. pyspf is
  synchronous, so it runs in a worker thread and each of its lookups is handed back to the
  event loop with :func:`asyncio.run_coroutine_threadsafe`; the loop stays free while a check
  waits for DNS, and a test answers from :class:`edgeward.testing.dns.FakeResolver`.
* one time limit covers the whole check, queueing for a worker included: a lookup waits only
  for what is left of it, and once it is spent the check ends as ``temperror`` (RFC 7208
  §4.6.4 allows a limit on the whole evaluation). The worker thread never outlives the limit
  by more than the CPU work between two lookups, which the term limits keep small.
* a TXT answer is bounded (count and total size) before pyspf sees it, so a name with a huge
  RRset cannot make us hold or scan it (``permerror``: the domain's DNS is broken, retrying
  will not help).
* a time-out or server failure is ``temperror``, NXDOMAIN and NODATA are void lookups (at most
  two, §4.6.4), a name that cannot be asked is an empty answer, as §4.3 requires.

The limits themselves are pyspf's, in its strict (RFC) mode: 10 DNS-querying terms
(``include``, ``a``, ``mx``, ``ptr``, ``exists``, ``redirect``), 2 void lookups, at most 10 MX
names per ``mx`` (more is ``permerror``), only the first 10 PTR names per ``ptr`` or ``%{p}``.
An include loop ends at the term limit, as ``permerror``.

Security: everything here is attacker-controlled, the envelope and the records alike. Macro
expansion only ever builds DNS names and the explanation text; the explanation is published by
the sender's domain, so it is returned for display and must be sanitised before it reaches a
header or a reply (:mod:`edgeward.senderauth.received_spf` does so for ``Received-SPF``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import ipaddress
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import spf as pyspf

from edgeward.ports import DnsAnswer, DnsError, DnsFailure, DnsLookup

__all__ = ["DEFAULT_TIME_LIMIT", "SpfIdentity", "SpfResult", "SpfStatus", "check_helo", "check_spf"]

DEFAULT_TIME_LIMIT = 20.0  # seconds for the whole check; RFC 7208 §4.6.4 suggests at least 20
MAX_TXT_RECORDS = 64  # TXT records looked at in one answer
MAX_TXT_OCTETS = 65535  # total size of one TXT answer; an RRset this large is never a real policy

_QTYPES = frozenset({"A", "AAAA", "MX", "PTR", "TXT"})
# Marks "no exp= text" in pyspf's explanation table, so it can be told from a published one.
_NO_EXPLANATION = "\x00no-explanation\x00"


class SpfStatus(enum.StrEnum):
    """The seven results of RFC 7208 §2.6."""

    PASS = "pass"  # noqa: S105  # a result name, not a password
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


class SpfIdentity(enum.StrEnum):
    """Which identity was checked (RFC 7208 §2.3, §2.4)."""

    MAILFROM = "mailfrom"
    HELO = "helo"


_DESCRIPTIONS = {
    SpfStatus.PASS: "{domain} designates {ip} as permitted sender",
    SpfStatus.FAIL: "{domain} does not designate {ip} as permitted sender",
    SpfStatus.SOFTFAIL: "{domain} discourages use of {ip} as a sender, without forbidding it",
    SpfStatus.NEUTRAL: "{domain} makes no assertion about {ip}",
    SpfStatus.NONE: "{domain} publishes no SPF record",
    SpfStatus.TEMPERROR: "temporary error evaluating the SPF record of {domain}",
    SpfStatus.PERMERROR: "the SPF record of {domain} cannot be evaluated",
}


@dataclass(frozen=True, slots=True)
class SpfResult:
    """The outcome of one SPF check, with what is needed to explain and stamp it.

    ``explanation`` is the domain's own ``exp=`` text, macro-expanded (RFC 7208 §6.2), and only
    for ``fail``; ``problem`` says what went wrong for ``temperror`` and ``permerror``;
    ``mechanism`` is the term that decided (``None`` when none matched and the default applied).
    ``dns_lookups`` counts the DNS-querying terms against the limit of 10, ``void_lookups`` the
    empty answers against the limit of 2, ``dns_queries`` the questions actually sent.
    """

    status: SpfStatus
    identity: SpfIdentity
    domain: str
    ip: str
    sender: str
    helo: str
    explanation: str | None = None
    problem: str | None = None
    mechanism: str | None = None
    dns_lookups: int = 0
    void_lookups: int = 0
    dns_queries: int = 0

    def finding_name(self) -> str:
        """The finding this result is reported as: ``SPF_PASS`` ... ``SPF_PERMERROR``."""
        return f"SPF_{self.status.value.upper()}"

    def description(self) -> str:
        """One line for people: what the result means, with the domain's reason when it gave one."""
        text = _DESCRIPTIONS[self.status].format(domain=self.domain or "(no domain)", ip=self.ip)
        if self.problem:
            text += f": {self.problem}"
        return text

    def as_dict(self) -> dict[str, object]:
        return {
            "result": self.status.value,
            "finding": self.finding_name(),
            "identity": self.identity.value,
            "domain": self.domain,
            "ip": self.ip,
            "sender": self.sender,
            "helo": self.helo,
            "explanation": self.explanation,
            "problem": self.problem,
            "mechanism": self.mechanism,
            "description": self.description(),
            "dns_lookups": self.dns_lookups,
            "void_lookups": self.void_lookups,
            "dns_queries": self.dns_queries,
        }


async def check_spf(
    lookup: DnsLookup,
    ip: str,
    sender: str,
    helo: str,
    *,
    receiver: str = "unknown",
    time_limit: float = DEFAULT_TIME_LIMIT,
    executor: Executor | None = None,
) -> SpfResult:
    """Check ``sender`` (the MAIL FROM address, ``""`` for the null sender) for a client at ``ip``.

    With a null sender the HELO identity is checked instead, as RFC 7208 §2.4 requires.
    ``receiver`` is our host name, for the ``%{r}`` macro. ``executor`` runs the evaluation
    (the loop's default executor when ``None``). Raises :class:`ValueError` only for an ``ip``
    that is not an IP address; everything the remote side controls gives a result.
    """
    return await _run(lookup, ip, sender, helo, receiver, time_limit, executor)


async def check_helo(
    lookup: DnsLookup,
    ip: str,
    helo: str,
    *,
    receiver: str = "unknown",
    time_limit: float = DEFAULT_TIME_LIMIT,
    executor: Executor | None = None,
) -> SpfResult:
    """Check the HELO identity alone (RFC 7208 §2.3), as recommended even when MAIL FROM is not null."""
    return await _run(lookup, ip, "", helo, receiver, time_limit, executor)


async def _run(
    lookup: DnsLookup,
    ip: str,
    sender: str,
    helo: str,
    receiver: str,
    time_limit: float,
    executor: Executor | None,
) -> SpfResult:
    address = ipaddress.ip_address(ip.strip().removeprefix("[").removesuffix("]"))
    loop = asyncio.get_running_loop()
    bridge = _Bridge(lookup, loop, time.monotonic() + time_limit)
    work = loop.run_in_executor(executor, bridge.evaluate, str(address), sender, helo, receiver)
    try:
        return await asyncio.wait_for(asyncio.shield(work), time_limit)
    except TimeoutError:
        # The worker sees the spent deadline at its next lookup and ends by itself; the caller
        # gets its answer now.
        bridge.abandon()
        return bridge.timed_out(str(address), sender, helo)
    except asyncio.CancelledError:
        bridge.abandon()
        raise


class _TimeLimit(pyspf.TempError):  # type: ignore[misc]
    """The check's time is spent: unlike a DNS error, never skipped over (RFC 7208 §5.5)."""


class _Bridge:
    """Carries pyspf's synchronous lookups, in the worker thread, to the port on the event loop."""

    def __init__(self, lookup: DnsLookup, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self._lookup = lookup
        self._loop = loop
        self._deadline = deadline
        self._abandoned = threading.Event()
        self.queries = 0

    def abandon(self) -> None:
        self._abandoned.set()

    def ask(self, name: str, rdtype: str) -> DnsAnswer | None:
        """The answer, ``None`` for NXDOMAIN or an unaskable name; raises pyspf's TempError."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0 or self._abandoned.is_set():
            raise _TimeLimit("SPF evaluation exceeded its time limit")
        self.queries += 1
        coro: Coroutine[Any, Any, DnsAnswer] = self._lookup.query(name, rdtype)
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=remaining)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise _TimeLimit("SPF evaluation exceeded its time limit") from None
        except concurrent.futures.CancelledError:
            raise pyspf.TempError(f"DNS lookup of {name}/{rdtype} was cancelled") from None
        except DnsError as exc:
            if exc.failure in (DnsFailure.NXDOMAIN, DnsFailure.INVALID):
                return None
            raise pyspf.TempError(f"DNS {exc.failure.value} for {name}/{rdtype}") from None
        except Exception as exc:  # a resolver fault must not become pass or permerror
            raise pyspf.TempError(f"DNS lookup of {name}/{rdtype} failed: {exc}") from None

    def evaluate(self, ip: str, sender: str, helo: str, receiver: str) -> SpfResult:
        query = _PortQuery(self, ip, sender, helo, receiver)
        # pyspf calls an empty sender with an empty HELO "mailfrom"; it is the HELO identity.
        identity = SpfIdentity.MAILFROM if sender else SpfIdentity.HELO
        domain = str(query.d or "")
        try:
            status, _code, text = query.check()
        except Exception as exc:  # pyspf's own recursion assertion, or a defect: never a pass
            return SpfResult(
                SpfStatus.PERMERROR, identity, domain, ip, sender, helo,
                problem=f"SPF evaluation failed: {exc}",
                dns_lookups=int(query.lookups), void_lookups=int(query.void_lookups),
                dns_queries=self.queries,
            )  # fmt: skip
        try:
            result = SpfStatus(pyspf.RESULTS.get(status, status))
        except ValueError:  # only pyspf's non-RFC modes have other results
            result = SpfStatus.PERMERROR
        explanation = None
        if result is SpfStatus.FAIL and text != _NO_EXPLANATION:
            explanation = str(text)
        problem = None
        if result in (SpfStatus.TEMPERROR, SpfStatus.PERMERROR):
            problem = str(text).removeprefix("SPF Permanent Error: ").removeprefix("SPF Temporary Error: ")
        return SpfResult(
            result, identity, domain, ip, sender, helo,
            explanation=explanation, problem=problem,
            mechanism=str(query.mechanism) if query.mechanism else None,
            dns_lookups=int(query.lookups), void_lookups=int(query.void_lookups),
            dns_queries=self.queries,
        )  # fmt: skip

    def timed_out(self, ip: str, sender: str, helo: str) -> SpfResult:
        identity = SpfIdentity.MAILFROM if sender else SpfIdentity.HELO
        domain = sender.rpartition("@")[2] if sender else helo
        return SpfResult(
            SpfStatus.TEMPERROR, identity, domain, ip, sender, helo,
            problem="SPF evaluation exceeded its time limit", dns_queries=self.queries,
        )  # fmt: skip


class _PortQuery(pyspf.query):  # type: ignore[misc]  # pyspf ships no type information
    """pyspf's evaluator with its one DNS entry point, :meth:`dns`, answered through the port."""

    def __init__(self, bridge: _Bridge, ip: str, sender: str, helo: str, receiver: str) -> None:
        super().__init__(i=ip, s=sender, h=helo, receiver=receiver, strict=True)
        self._bridge = bridge
        self.set_default_explanation(_NO_EXPLANATION)

    def validated_ptrs(self) -> list[str]:
        """The client's validated names (RFC 7208 §5.5), for ``ptr`` and ``%{p}``.

        pyspf lets a DNS error here end the check as ``temperror``; §5.5 says otherwise: an error
        on the PTR lookup means no names, and a name whose address lookup fails is skipped.
        """
        try:
            names: list[str] = self.dns_ptr(self.i)[: pyspf.MAX_PTR]
        except _TimeLimit:
            raise
        except pyspf.TempError:
            return []
        validated = []
        for name in names:
            try:
                addresses = self.dns_a(name, self.A)
            except _TimeLimit:
                raise
            except pyspf.TempError:
                continue
            if self.cidrmatch(addresses, self.cidrmax):
                validated.append(name)
        return validated

    def dns(self, name: str, qtype: str, cnames: object = None, ignore_void: bool = False) -> list[Any]:
        """Records of ``qtype`` at ``name`` in the shapes pyspf expects; counts void lookups.

        CNAMEs are followed by the port's resolver, so ``cnames`` is never needed here.
        """
        if qtype not in _QTYPES:
            raise pyspf.PermError(f"unexpected DNS query type {qtype}")
        name = str(name).removesuffix(".").lower()
        # RFC 7208 §4.3: a name with an empty or over-long label is not asked; it has no records.
        if not name or any(not 0 < len(label) < 64 for label in name.split(".")):
            return []
        key = (name, qtype)
        records: list[Any] | None = self.cache.get(key)
        if records is None:
            answer = self._bridge.ask(name, qtype)
            records = _records(name, qtype, answer)
            self.cache[key] = records
        if not records and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > pyspf.MAX_VOID_LOOKUPS:
                raise pyspf.PermError(f"Void lookup limit of {pyspf.MAX_VOID_LOOKUPS} exceeded")
        return list(records)


def _records(name: str, qtype: str, answer: DnsAnswer | None) -> list[Any]:
    if answer is None:
        return []
    records = answer.records
    if qtype == "TXT":
        if len(records) > MAX_TXT_RECORDS or sum(len(r) for r in records) > MAX_TXT_OCTETS:
            raise pyspf.PermError(
                f"TXT answer for {name} is too large ({len(records)} records,"
                f" limits {MAX_TXT_RECORDS} records / {MAX_TXT_OCTETS} octets)"
            )
        # pyspf joins the character-strings of a record; the port already has (RFC 7208 §3.3).
        return [(r.encode("utf-8"),) for r in records]
    if qtype == "MX":
        hosts: list[tuple[int, str]] = []
        for record in records:
            preference, _, host = record.partition(" ")
            if preference.isdigit():
                hosts.append((int(preference), host))
        return hosts
    return list(records)
