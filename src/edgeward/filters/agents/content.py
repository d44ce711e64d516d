"""Content filtering at end of data: a spam confidence level for every message, and its action.

The classifier (``edgeward.content``) rates the message; this agent stamps the verdict and acts
on Exchange's thresholds, checked from the most severe down: delete (silently, ``250`` and
dropped), reject (``550 5.7.1`` with the configured text), quarantine (``250`` and held). Each is
enabled separately; Exchange's defaults enable only reject, at SCL 7.

Not scored (SCL -1, as Exchange stamps it): sessions with the ``bypass_antispam`` right
(authenticated users, domain-secure partners, trusted servers), messages whose recipients are
all bypassed, bypassed senders and sender domains, and messages over ``max_size``.

Learning done elsewhere (``edgeward spam learn``, a quarantine release) reaches the running
gateway within ``refresh_interval``: the classifier is asked to refresh before each message.

Stamps: ``X-Edgeward-SCL`` and ``X-Edgeward-Antispam-Report`` (SCL, PCL, probability, top
findings). The session removes any such header a client sent, so a stamp is always ours.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from edgeward.config.schema import ContentFilterConfig
from edgeward.content.classifier import ContentVerdict, SpamClassifier
from edgeward.filters.agents.relay import domain_matches
from edgeward.filters.base import Stage, StageContext
from edgeward.types import Action, Finding, Outcome, Reply

SCL_HEADER = "X-Edgeward-SCL"
REPORT_HEADER = "X-Edgeward-Antispam-Report"
# Scoring is CPU work of about a millisecond for ordinary mail; larger messages are scored in
# a worker thread so one big message does not stall every other session.
INLINE_LIMIT = 256 * 1024


class ContentFilter:
    """Rate messages with an SCL and act on the configured thresholds."""

    name = "content-filter"
    stages = frozenset({Stage.EOD})
    fail_open = False

    def __init__(self, classifier: SpamClassifier, cfg: ContentFilterConfig) -> None:
        self.classifier = classifier
        self.cfg = cfg
        self._recipients = frozenset(r.lower() for r in cfg.bypassed_recipients)
        self._senders = frozenset(s.lower() for s in cfg.bypassed_senders)
        self._domains = frozenset(d.lower() for d in cfg.bypassed_sender_domains)

    def _bypassed(self, ctx: StageContext) -> str:
        if ctx.session.bypass_antispam:
            return "session"
        sender = ctx.mail_from
        if (
            sender is not None
            and not sender.is_null
            and (str(sender).lower() in self._senders or domain_matches(sender.domain, self._domains))
        ):
            return "sender"
        if ctx.recipients and all(str(r).lower() in self._recipients for r in ctx.recipients):
            return "recipients"
        if len(ctx.data) > self.cfg.max_size:
            return "size"
        return ""

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        reason = self._bypassed(ctx)
        if reason:
            finding = Finding("CONTENT_BYPASSED", self.name, reason)
            return Outcome(Action.CONTINUE, findings=(finding,), headers=((SCL_HEADER, "-1"),))
        # Here, on the loop's thread, as the store's connection wants; cheap unless it changed.
        self.classifier.refresh_if_due()
        if len(ctx.data) > INLINE_LIMIT:
            verdict = await asyncio.to_thread(self.classifier.score, ctx.data)
        else:
            verdict = self.classifier.score(ctx.data)
        findings = (
            Finding(f"SCL_{verdict.scl}", self.name, f"p={verdict.probability:.4f} pcl={verdict.pcl}"),
            *(Finding(name, self.name, f"{weight:+.2f}") for name, weight in verdict.findings),
        )
        headers = ((SCL_HEADER, str(verdict.scl)), (REPORT_HEADER, report(verdict)))
        cfg = self.cfg
        if cfg.delete_enabled and verdict.scl >= cfg.delete_threshold:
            return Outcome(Action.DISCARD, None, findings, headers)
        if cfg.reject_enabled and verdict.scl >= cfg.reject_threshold:
            return Outcome(Action.REJECT, Reply(550, "5.7.1", cfg.rejection_response), findings, headers)
        if cfg.quarantine_enabled and verdict.scl >= cfg.quarantine_threshold:
            return Outcome(Action.QUARANTINE, None, findings, headers)
        return Outcome(Action.CONTINUE, None, findings, headers)


def report(verdict: ContentVerdict) -> str:
    """The anti-spam report header value: ``SCL:8;PCL:4;P:0.9950;F:GTUBE,LINK_MISMATCH``."""
    names = ",".join(name for name, _ in verdict.findings[:6])
    return f"SCL:{verdict.scl};PCL:{verdict.pcl};P:{verdict.probability:.4f};F:{names}"


class UnloadedContentFilter:
    """The content filter while its classifier cannot be loaded (an unreadable model file, a
    corrupt or locked learning database).

    Each message raises, which the pipeline answers with ``451 4.3.0`` and logs under this
    agent's name: unscanned mail is never accepted, and the rest of the gateway (other agents,
    sessions, deliveries) keeps running. The load is tried again, at most every
    ``retry_interval`` seconds and in a worker thread, so a repaired file brings filtering back
    without a restart.
    """

    name = "content-filter"
    stages = frozenset({Stage.EOD})
    fail_open = False

    def __init__(
        self,
        load: Callable[[], SpamClassifier],
        cfg: ContentFilterConfig,
        error: str,
        retry_interval: float = 10.0,
    ) -> None:
        self._load = load
        self.cfg = cfg
        self._error = error
        self._retry_interval = retry_interval
        self._tried_at = time.monotonic()
        self._agent: ContentFilter | None = None

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        if self._agent is None and time.monotonic() - self._tried_at >= self._retry_interval:
            self._tried_at = time.monotonic()
            try:
                self._agent = ContentFilter(await asyncio.to_thread(self._load), self.cfg)
            except Exception as exc:
                self._error = str(exc)
        if self._agent is None:
            raise RuntimeError(f"the classifier cannot be loaded: {self._error}")
        return await self._agent.check(stage, ctx)
