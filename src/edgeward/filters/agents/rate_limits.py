"""Rate limits through the policy store (issue 8 §2.9): connections, messages and recipients
per minute per source IP, per authenticated user and per sender domain.

Counters are fixed one-minute windows of the store (``incr`` with ``window=60``), so every
process of one gateway, and later every gateway sharing a store, counts together; the keys are
``rate:<what>:<per>:<subject>``. Over a limit a command gets ``450 4.7.1`` naming the limit;
at CONNECT, where a ``4xx`` greeting must close (RFC 5321 §3.1), the answer is ``421 4.7.1``
and the connection is closed. Every limit is 0 (off) by default: the right numbers depend on
the site. ``[receive_connectors] message_rate_limit`` (``filters.agents.rate``) still works.

A hard control: authenticated users are limited too (that is what the per-user limit is for).
A store that cannot answer lets the command through with a ``RATE_TEMPERROR`` finding: an
outage of the counters must not stop the mail, and a limit is not a security boundary.
"""

from __future__ import annotations

import logging

from edgeward.config.schema import RateLimitsConfig
from edgeward.filters.base import Stage, StageContext
from edgeward.ports import PolicyStore, PolicyStoreError
from edgeward.types import Action, Finding, Outcome, Reply

log = logging.getLogger("edgeward.filters.rate_limits")

WINDOW = 60.0
_WHAT = {Stage.CONNECT: "connections", Stage.MAIL: "messages", Stage.RCPT: "recipients"}


class RateLimits:
    """Count connections, messages and recipients per minute; refuse over a configured limit."""

    name = "rate-limits"
    stages = frozenset({Stage.CONNECT, Stage.MAIL, Stage.RCPT})
    antispam = False
    fail_open = True

    def __init__(self, config: RateLimitsConfig, store: PolicyStore) -> None:
        self.config = config
        self.store = store

    def _limits(self, stage: Stage, ctx: StageContext) -> list[tuple[str, str, int]]:
        """(per, subject, limit) for every limit that is on at this stage."""
        c = self.config
        found: list[tuple[str, str, int]] = []
        if stage is Stage.CONNECT:
            found.append(("ip", ctx.session.peer.ip, c.connections_per_ip))
        else:
            ip, user = (
                (c.messages_per_ip, c.messages_per_user)
                if stage is Stage.MAIL
                else (c.recipients_per_ip, c.recipients_per_user)
            )
            domain = c.messages_per_sender_domain if stage is Stage.MAIL else c.recipients_per_sender_domain
            found.append(("ip", ctx.session.peer.ip, ip))
            if ctx.session.authenticated:
                found.append(("user", ctx.session.authenticated.lower(), user))
            sender = ctx.mail_from
            if sender is not None and sender.domain:
                found.append(("sender-domain", sender.domain.lower().rstrip("."), domain))
        return [(per, subject, limit) for per, subject, limit in found if limit > 0]

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        what = _WHAT[stage]
        for per, subject, limit in self._limits(stage, ctx):
            try:
                count = await self.store.incr(f"rate:{what}:{per}:{subject}", window=WINDOW)
            except PolicyStoreError as exc:
                log.warning("rate-limits: %s", exc)
                return Outcome.proceed(Finding("RATE_TEMPERROR", self.name, str(exc)))
            if count > limit:
                text = f"Rate limit exceeded: {limit} {what} per minute per {per} {subject}, try again later"
                finding = Finding(
                    "RATE_LIMIT_EXCEEDED", self.name, f"{what}/min per {per} {subject}: {count}"
                )
                if stage is Stage.CONNECT:
                    return Outcome(Action.DISCONNECT, Reply(421, "4.7.1", text), (finding,))
                return Outcome.tempfail(Reply(450, "4.7.1", text), finding)
        return Outcome.proceed()
