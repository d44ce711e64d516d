"""A DNS fake: zones held in memory, answering :class:`edgeward.ports.DnsLookup` questions.

Records are given in the presentation form :class:`~edgeward.ports.DnsAnswer` uses. A name
exists when it holds any record or has a name below it (RFC 8020: an empty non-terminal is not
NXDOMAIN); a missing type at an existing name is NODATA. A name that does not exist is answered
from a wildcard (``*.zone``) at its closest encloser, as an authoritative server does (RFC 4592).
CNAMEs are followed, as a recursive resolver does, up to a bound (a loop is SERVFAIL, as it is
from a real resolver). Names can be marked to time out or to fail, which is what the
conformance suites (OpenSPF's ``TIMEOUT`` zone entries) and fault tests need.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dns.exception
import dns.name

from edgeward.ports import DnsAnswer, DnsError, DnsFailure

_MAX_CNAME_CHAIN = 8


def _norm(name: str) -> str:
    """The name as the real resolver asks it: IDNA A-labels, escapes, lower case, no final dot.

    Raises ``ValueError`` for a name that cannot be asked (the same rules as dnspython's)."""
    try:
        parsed = dns.name.from_text(name)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ValueError(f"invalid name {name!r}: {exc}") from None
    if parsed == dns.name.root:
        raise ValueError("the root name is no question a mail check asks")
    return str(parsed.to_text(omit_final_dot=True)).lower()


class FakeResolver:
    """In-memory zones; ``queries`` records every question asked, in order.

    ``authenticated`` sets the AD flag on every answer; ``secure_zones`` only on answers for
    names in those zones, as a validating resolver does for signed zones beside unsigned ones.
    """

    def __init__(
        self,
        records: Mapping[tuple[str, str], Iterable[str]] | None = None,
        *,
        timeouts: Iterable[str] = (),
        failures: Iterable[str] = (),
        authenticated: bool = False,
        secure_zones: Iterable[str] = (),
    ) -> None:
        self._records: dict[tuple[str, str], list[str]] = {}
        self._timeouts = {_norm(n) for n in timeouts}
        self._failures = {_norm(n) for n in failures}
        self.authenticated = authenticated
        self._secure = {_norm(z) for z in secure_zones}
        self.queries: list[tuple[str, str]] = []
        for (name, rdtype), values in (records or {}).items():
            for value in values:
                self.add(name, rdtype, value)

    def add(self, name: str, rdtype: str, value: str) -> None:
        """Add one record; ``name`` is normalised as a query is (``bücher.test``: ``xn--bcher-kva.test``)."""
        self._records.setdefault((_norm(name), rdtype.upper()), []).append(value)

    def time_out(self, name: str) -> None:
        self._timeouts.add(_norm(name))

    def fail(self, name: str) -> None:
        self._failures.add(_norm(name))

    def _exists(self, name: str) -> bool:
        suffix = "." + name
        return any(n == name or n.endswith(suffix) for n, _ in self._records)

    def _owner(self, name: str) -> str | None:
        """The name whose records answer for ``name``: itself if it exists, else the wildcard
        at its closest encloser (RFC 4592 §3.3.1), else None (NXDOMAIN)."""
        if self._exists(name):
            return name
        labels = name.split(".")
        for i in range(1, len(labels)):
            encloser = ".".join(labels[i:])
            if self._exists(encloser):
                wildcard = "*." + encloser
                return wildcard if self._exists(wildcard) else None
        return None

    def _vouched(self, name: str) -> bool:
        """The AD flag: set for every answer, or for answers inside a ``secure_zones`` zone."""
        return self.authenticated or any(name == z or name.endswith("." + z) for z in self._secure)

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        rdtype = rdtype.upper()
        try:
            current = _norm(name)
        except ValueError as exc:
            raise DnsError(str(exc), DnsFailure.INVALID) from None
        self.queries.append((current, rdtype))
        for _ in range(_MAX_CNAME_CHAIN):
            if current in self._timeouts:
                raise DnsError(f"{current}/{rdtype}: DNS timeout", DnsFailure.TIMEOUT)
            if current in self._failures:
                raise DnsError(f"{current}/{rdtype}: DNS server failure", DnsFailure.SERVFAIL)
            owner = self._owner(current)
            if owner is None:
                raise DnsError(f"{current}: no such domain (NXDOMAIN)", DnsFailure.NXDOMAIN)
            found = self._records.get((owner, rdtype))
            if found is not None:
                return DnsAnswer(tuple(found), self._vouched(current))
            alias = self._records.get((owner, "CNAME"))
            if alias and rdtype != "CNAME":
                current = _norm(alias[0])
                continue
            return DnsAnswer((), self._vouched(current))
        raise DnsError(f"{name}: CNAME chain too long", DnsFailure.SERVFAIL)
