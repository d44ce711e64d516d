"""The hosts a next hop stands for: MX lookup for DNS routing, the host list for smart hosts.

This module owns turning a :class:`~edgeward.delivery.routing.Route` into an ordered list of
``(host, port)`` targets, and the translation of DNS failures into the reply the recipients get
(RFC 5321 §5.1, RFC 7505, RFC 3463):

* NXDOMAIN, or no MX and no address: ``550 5.1.2`` (bad destination system), permanent.
* Null MX ``0 .``: ``556 5.1.10`` (RFC 7505 §4.2), permanent.
* SERVFAIL, time-out: ``451 4.4.3`` (routing server failure), retried.

Security: MX data is untrusted; host names are only passed to the resolver and to TLS as the
server name, never to a shell or a file path.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeward.config.schema import split_hostport
from edgeward.delivery.routing import Route
from edgeward.errors import DeliveryError
from edgeward.net.dns import NullMxError
from edgeward.ports import Resolver, ResolverError
from edgeward.types import Reply

__all__ = ["Target", "route_failure", "targets"]


@dataclass(frozen=True, slots=True)
class Target:
    """One host to try, in order. ``from_dns`` hosts are resolved through the Resolver port."""

    host: str
    port: int
    from_dns: bool


def route_failure(domain: str, exc: ResolverError) -> DeliveryError:
    """The delivery error (with the reply for every recipient) for a failed MX lookup."""
    if isinstance(exc, NullMxError):
        reply = Reply(556, "5.1.10", f"Recipient domain {domain} does not accept mail (null MX)")
    elif exc.permanent:
        reply = Reply(550, "5.1.2", f"Recipient domain {domain} has no mail server: {exc}")
    else:
        reply = Reply(451, "4.4.3", f"DNS lookup for {domain} failed, will retry: {exc}")
    return DeliveryError(str(exc), permanent=exc.permanent, reply=reply)


async def targets(route: Route, resolver: Resolver | None) -> list[Target]:
    """The hosts of ``route`` in the order to try them; raises :class:`DeliveryError`."""
    connector = route.connector
    if not connector.dns_routing:
        # Smart hosts are tried in the configured order (Exchange failover); their names are
        # resolved by the system resolver, as internal hosts often live in /etc/hosts.
        return [Target(*split_hostport(h, connector.port), from_dns=False) for h in connector.smart_hosts]
    if resolver is None:
        raise DeliveryError("DNS routing without a resolver", reply=Reply(451, "4.3.5", "No DNS resolver"))
    domain = route.next_hop
    try:
        hosts = await resolver.mx(domain)
    except ResolverError as exc:
        raise route_failure(domain, exc) from None
    return [Target(mx.host, connector.port, from_dns=True) for mx in hosts]
