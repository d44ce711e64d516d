"""Sender authority at MAIL: only trusted clients may use an accepted domain as sender.

Mail from the internet that claims to come from the organisation's own domain is the classic
spoof. As Exchange's Internet connector does (anonymous users lack
ms-Exch-SMTP-Accept-Authoritative-Domain-Sender), a client without the ``send_as_accepted``
right (authenticated users, trusted servers and relay ranges have it) gets ``550 5.7.1``.
The null sender is never refused: bounces carry no sender to spoof.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgeward.filters.agents.relay import domain_matches
from edgeward.filters.base import Stage, StageContext
from edgeward.types import Finding, Outcome, Reply

NOT_AUTHORISED = Reply(550, "5.7.1", "Client does not have permission to send as this sender")


class SenderAuthority:
    """Refuse an accepted domain as sender from clients without the right to send as it."""

    name = "sender-authority"
    stages = frozenset({Stage.MAIL})
    antispam = False
    fail_open = False

    def __init__(self, accepted_domains: Iterable[str]) -> None:
        self.accepted = frozenset(d.lower().rstrip(".") for d in accepted_domains)

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        sender = ctx.mail_from
        if sender is None or sender.is_null or "send_as_accepted" in ctx.session.rights:
            return Outcome.proceed()
        if domain_matches(sender.domain, self.accepted):
            return Outcome.reject(
                NOT_AUTHORISED, Finding("SENDER_SPOOFS_ACCEPTED_DOMAIN", self.name, str(sender))
            )
        return Outcome.proceed()
