"""Relay control at RCPT: accepted domains for everyone, other domains only with relay rights.

This is the check that keeps the gateway from being an open relay. A recipient is taken when
its domain is an accepted domain (mail *to* the organisation, from anyone), or when the
session's receive connector grants the ``relay`` permission (mail *from* the organisation's own
servers, to anywhere). Everything else gets ``550 5.7.1`` as Exchange answers it.

Security: the decision is made on the routing domain the SMTP parser extracted. Old routing
tricks that hide a second domain in the local part (``user%other@ours``, ``other!user@ours``,
a quoted ``"user@other"@ours``) are refused for sessions without relay rights, as Postfix does
with ``allow_untrusted_routing = no``: an internal server that honours them would otherwise
relay for anyone through us. Address literals are never accepted domains.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgeward.filters.base import Stage, StageContext
from edgeward.types import Finding, Outcome, Reply

RELAY_DENIED = Reply(550, "5.7.1", "Unable to relay")
ROUTING_DENIED = Reply(550, "5.7.1", "Source routing and percent hacks are not allowed")


def domain_matches(domain: str, patterns: frozenset[str]) -> bool:
    """``domain`` equals a pattern, or falls under a ``*.parent`` pattern."""
    domain = domain.lower().rstrip(".")
    if domain in patterns:
        return True
    parts = domain.split(".")
    return any(f"*.{'.'.join(parts[i:])}" in patterns for i in range(1, len(parts)))


class RelayControl:
    """Accept mail for accepted domains; relay elsewhere only with the relay permission."""

    name = "relay-control"
    stages = frozenset({Stage.RCPT})
    antispam = False
    fail_open = False

    def __init__(self, accepted_domains: Iterable[str]) -> None:
        self.accepted = frozenset(d.lower().rstrip(".") for d in accepted_domains)

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        rcpt = ctx.recipient
        if rcpt is None:
            return Outcome.proceed()
        if ctx.session.may_relay:
            return Outcome.proceed()
        if rcpt.domain.startswith("[") or not domain_matches(rcpt.domain, self.accepted):
            return Outcome.reject(RELAY_DENIED, Finding("RCPT_RELAY_DENIED", self.name, str(rcpt)))
        if any(ch in rcpt.local for ch in "%!@"):
            return Outcome.reject(ROUTING_DENIED, Finding("RCPT_ROUTING_TRICK", self.name, str(rcpt)))
        return Outcome.proceed()
