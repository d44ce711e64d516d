"""Outbound routing: which send connector, and which next hop, serves a recipient domain.

This module owns the choice Exchange calls "address space selection" (send connectors,
reference §4.1): among connectors whose address space matches the domain, the most specific
match wins (an exact domain, then ``*.parent`` by the length of the parent, then ``*``), then
the lowest cost; equal candidates keep configuration order. It is pure: no DNS, no I/O.

The next hop names the delivery queue a message waits in (reference §4.3: one queue per next
hop): the recipient domain for DNS routing, the connector name and host list for smart hosts,
the folder for a drop-folder connector. Recipients with the same next hop travel together.

Security: an accepted domain's MX records point at this gateway, so a DNS-routing connector that
matches such a domain only through the catch-all ``*`` would send its mail back here in a
loop. Those matches are skipped; mail for accepted domains needs an explicit address space.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edgeward.config.schema import Config, SendConnectorConfig

__all__ = ["Route", "Router", "normalize_domain"]


def normalize_domain(domain: str) -> str:
    """Lower-case ASCII (IDNA) form of ``domain`` without a trailing dot; ``""`` if invalid."""
    domain = domain.strip().rstrip(".").lower()
    if domain.startswith("[") and domain.endswith("]"):
        return domain  # an address literal (RFC 5321 §4.1.3) routes only through '*'
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return ""
    return domain


@dataclass(frozen=True, slots=True)
class Route:
    """A connector chosen for a domain and the delivery queue (next hop) it implies."""

    connector: SendConnectorConfig
    next_hop: str

    @property
    def kind(self) -> str:
        if self.connector.drop_dir is not None:
            return "drop"
        return "dns" if self.connector.dns_routing else "smarthost"


def _specificity(space: str, domain: str) -> tuple[int, int] | None:
    """How well an address space matches; ``None`` when it does not match at all."""
    if space == "*":
        return (0, 0)
    if space.startswith("*."):
        parent = space[2:]
        # Exchange's "*.contoso.com" covers contoso.com and every name below it.
        if domain == parent or domain.endswith("." + parent):
            return (1, len(parent))
        return None
    return (2, len(space)) if domain == space else None


class Router:
    """Chooses a send connector for each recipient domain."""

    def __init__(
        self, send_connectors: Sequence[SendConnectorConfig], accepted_domains: Iterable[str]
    ) -> None:
        self._connectors = tuple(send_connectors)
        self._accepted = frozenset(normalize_domain(d) for d in accepted_domains)

    @classmethod
    def from_config(cls, config: Config) -> Router:
        return cls(config.send_connectors, config.accepted_domains)

    def route(self, domain: str) -> Route | None:
        """The route for ``domain``, or ``None`` when no connector serves it (unreachable)."""
        domain = normalize_domain(domain)
        if not domain:
            return None
        best: tuple[tuple[int, int], int, int] | None = None
        chosen: SendConnectorConfig | None = None
        for index, connector in enumerate(self._connectors):
            for space in connector.address_spaces:
                spec = _specificity(space.domain, domain)
                if spec is None:
                    continue
                if spec == (0, 0) and connector.dns_routing and domain in self._accepted:
                    continue  # see Security in the module docstring
                # Larger specificity first, then lower cost, then earlier connector.
                key = ((-spec[0], -spec[1]), space.cost, index)
                if best is None or key < best:
                    best, chosen = key, connector
        if chosen is None:
            return None
        return Route(chosen, self._next_hop(chosen, domain))

    @staticmethod
    def _next_hop(connector: SendConnectorConfig, domain: str) -> str:
        if connector.drop_dir is not None:
            return f"drop:{connector.drop_dir}"
        if connector.dns_routing:
            return domain
        return f"{connector.name}[{','.join(connector.smart_hosts)}]"
