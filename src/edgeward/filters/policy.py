"""The policy layer as the session sees it: one question per stage, one verdict per message.

The session drives the protocol and asks ``Policy``; ``Policy`` fills in the exemption
(``filters.exemptions``), runs the pipeline, keeps the findings in the session's ``Ledger``,
and answers with a ``StageDecision`` (before end of data) or a ``Verdict`` (at end of data).
It also owns the small rules the session used to hold: where ``RCPT TO:<Postmaster>`` goes, how
long a refusal is tarpitted, and the connector's preconditions for MAIL (TLS and AUTH when
required, domain security's certificate rule for partner senders).

Actions mean the same at every stage: ``REJECT`` and ``TEMPFAIL`` refuse the command,
``DISCONNECT`` sends the agent's reply (``421 4.7.0`` when it gave none) and closes the
connection, at CONNECT, HELO, MAIL, RCPT, DATA and EOD alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.exemptions import Exemptions
from edgeward.filters.pipeline import Pipeline
from edgeward.filters.scoring import Thresholds
from edgeward.filters.transforms import Transforms
from edgeward.filters.verdict import Ledger, Verdict, decide
from edgeward.scanning.walk import WalkLimits
from edgeward.types import Action, Address, Finding, Reply

log = logging.getLogger("edgeward.policy")

CLOSING = Reply(421, "4.7.0", "Closing connection")
ACCESS_DENIED = Reply(554, "5.7.1", "Access denied")
NO_POSTMASTER = Reply(550, "5.1.1", "No postmaster mailbox here")
TLS_REQUIRED = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")


@dataclass(frozen=True, slots=True)
class StageDecision:
    """The answer to one command: a refusal (and whether to close), or go on."""

    reply: Reply | None = None
    disconnect: bool = False
    decided_by: str = ""
    findings: tuple[Finding, ...] = ()
    # A refused recipient whose agent closes once the recipients are done (Outcome's field).
    close_after_recipients: bool = False


class VerdictListener(Protocol):
    """Learns from every verdict at end of data (sender reputation keeps the SCL history)."""

    async def learned(self, ctx: StageContext, verdict: Verdict) -> None: ...


class Policy:
    """Asks the agents at each stage and decides; built by ``runtime``."""

    def __init__(
        self,
        pipeline: Pipeline,
        thresholds: Thresholds,
        exemptions: Exemptions | None = None,
        transforms: Transforms | None = None,
        *,
        postmaster: str = "",
        tarpit_max: float = 0.0,
        listeners: Sequence[VerdictListener] = (),
        walk_limits: WalkLimits | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.thresholds = thresholds
        self.exemptions = exemptions or Exemptions()
        self.transforms = transforms or Transforms()
        self.postmaster = postmaster
        # Protocol findings lengthen the tarpit up to this (0: it never grows past the interval).
        self.tarpit_max = tarpit_max
        self.listeners = tuple(listeners)
        # The bounds of the one MIME walk per message the content agents share (MessageView.walk).
        self.walk_limits = walk_limits

    async def exemption(self, ctx: StageContext, ledger: Ledger) -> str:
        ex = self.exemptions
        session = ex.session(ctx.session.peer, ctx.session.bypass_antispam)
        if ctx.stage in (Stage.CONNECT, Stage.HELO) or session:
            return session
        if ctx.stage is Stage.MAIL:
            return ex.sender(ctx.mail_from)

        async def recipient(rcpt: Address) -> str:
            reason = ledger.recipient_exemption(rcpt)
            if reason is None:
                reason = await ex.recipient(ctx.mail_from, rcpt)
                ledger.note_recipient_exemption(rcpt, reason)
            return reason

        if ctx.stage is Stage.RCPT and ctx.recipient is not None:
            return ex.sender(ctx.mail_from) or await recipient(ctx.recipient)
        return await ex.message(session, ctx.mail_from, ctx.recipients, recipient=recipient)

    async def stage(self, ctx: StageContext, ledger: Ledger) -> StageDecision:
        """Run the agents of a stage before end of data."""
        ctx = replace(ctx, exempt=await self.exemption(ctx, ledger), earlier=ledger.findings)
        result = await self.pipeline.run(ctx.stage, ctx)
        action = result.action
        if action not in (Action.REJECT, Action.TEMPFAIL, Action.DISCONNECT):
            ledger.add(ctx.stage, result)
            return StageDecision(findings=ledger.findings)
        # The findings of a refused command explain that refusal (tracked with it) and are not
        # carried on: a recipient refused at RCPT must not weigh on the message to the others.
        findings = (*ledger.findings, *result.findings)
        default = ACCESS_DENIED if ctx.stage is Stage.CONNECT else CLOSING
        reply = result.outcome.reply or default
        linger = ctx.stage is Stage.RCPT and action is Action.REJECT and result.outcome.close_after_recipients
        closes = action is Action.DISCONNECT
        return StageDecision(reply, closes, f"agent {result.decided_by}", findings, linger)

    async def end_of_data(self, ctx: StageContext, ledger: Ledger) -> Verdict:
        """Run the EOD agents and decide the message over everything the session found."""
        exempt = await self.exemption(ctx, ledger)
        ctx = replace(ctx, exempt=exempt, earlier=ledger.findings)
        result = await self.pipeline.run(Stage.EOD, ctx)
        ledger.add(Stage.EOD, result)
        verdict = decide(
            ledger, result, self.thresholds, exempt=exempt, observe_only=self.pipeline.observe_only
        )
        if verdict.action is Action.DISCONNECT and verdict.reply is None:
            verdict = replace(verdict, reply=CLOSING)
        for listener in self.listeners:
            try:
                await listener.learned(ctx, verdict)
            except Exception:  # learning is a side effect; it must never decide the fate of mail
                log.exception("verdict listener %s failed", type(listener).__name__)
        return verdict

    def recipient(self, address: Address) -> Address | Reply:
        """``RCPT TO:<Postmaster>`` (no domain, RFC 5321 §4.5.1) goes to the configured mailbox."""
        if address.domain:
            return address
        if not self.postmaster:
            return NO_POSTMASTER
        local, _, domain = self.postmaster.rpartition("@")
        return Address(local, domain)

    def tarpit(self, reply: Reply, info: SessionInfo) -> float:
        """Seconds to wait before a refusal: permanent ones to anonymous clients slow harvesting.

        Each protocol misbehaviour the session noticed (``filters.signals``) adds one interval,
        up to ``tarpit_max``: a client that pregreets or pipelines unasked is a bot more often
        than not, and every second it waits is a second it does not spend on someone else.
        """
        if not reply.is_permanent or info.authenticated:
            return 0.0
        base = info.connector.tarpit_interval
        grown = base * (1 + info.protocol.total)
        return min(grown, max(base, self.tarpit_max))


def mail_admission(info: SessionInfo, sender: Address, tls_active: bool) -> Reply | None:
    """The connector's preconditions for MAIL: TLS and AUTH when required, and domain security.

    A sender from a domain-secure partner domain must have shown that partner's certificate.
    """
    connector = info.connector
    if connector.require_tls and not tls_active:
        return TLS_REQUIRED
    if connector.require_auth and not info.authenticated:
        return AUTH_REQUIRED
    domain = sender.domain.lower()
    if not domain or domain not in connector.domain_secure_partners:
        return None
    if not tls_active:
        return Reply(530, "5.7.0", f"Domain security requires STARTTLS for {domain}")
    if domain not in info.peer_names:
        return Reply(454, "4.7.0", f"No valid TLS certificate for partner domain {domain}")
    return None
