"""Content filtering at end of data: a spam confidence level (SCL 0-9) for every message.

The classifier (``edgeward.content``) rates the message; this agent reports the rating as one
finding, ``SCL_<n>``, whose weight the score table gives (``n`` by default), and the policy
decides on the total with every other finding (``filters.verdict``). The thresholds of
``[agents.content_filter]`` (reject, quarantine, delete at an SCL) are the defaults of
``[policy]``'s thresholds, so they keep working.

Exemptions (``bypass_antispam`` sessions, bypassed senders and recipients, the IP allow list)
are decided by ``filters.exemptions``; the pipeline does not call this agent for an exempt
message, and the stamps transform marks it SCL -1, as Exchange does. Messages over
``max_size`` are not scanned either (SCL -1, ``CONTENT_BYPASSED``).

The message is parsed once at end of data (``StageContext.message``); the classifier reads that
parse. Learning done elsewhere (``edgeward spam learn``, a quarantine release) reaches the
running gateway within ``refresh_interval``: the classifier is asked to refresh before each
message.

Links, From or Reply-To imitating one of the accepted domains (``edgeward.content.lookalike``)
add a ``LOOKALIKE_OWN_DOMAIN`` finding, weighed by the score table besides the SCL.

Stamps: ``X-Edgeward-SCL`` and the content part of ``X-Edgeward-Antispam-Report`` (SCL, PCL,
probability, top classifier cues), which the stamps transform completes with every finding.

Security: the classifier is given this gateway's SPF, DKIM and DMARC results (the findings of
the ``spf`` and ``sender-auth`` agents) and never reads a client's Authentication-Results.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from edgeward.config.schema import ContentFilterConfig
from edgeward.content.classifier import ContentVerdict, SpamClassifier
from edgeward.content.workers import ScoringWorkers
from edgeward.filters.agents.senderauth import auth_results
from edgeward.filters.base import Stage, StageContext
from edgeward.filters.message import MessageView
from edgeward.message_file import text_of
from edgeward.metrics import observe_classifier
from edgeward.types import Action, Finding, Outcome

SCL_HEADER = "X-Edgeward-SCL"
REPORT_HEADER = "X-Edgeward-Antispam-Report"
# Scoring is CPU work of about a millisecond for ordinary mail; larger messages are scored in
# a worker thread so one big message does not stall every other session.
INLINE_LIMIT = 256 * 1024


class ContentFilter:
    """Rate messages with a spam confidence level; the policy acts on it."""

    name = "content-filter"
    stages = frozenset({Stage.EOD})
    antispam = True
    fail_open = False

    def __init__(
        self, classifier: SpamClassifier, cfg: ContentFilterConfig, workers: ScoringWorkers | None = None
    ) -> None:
        self.classifier = classifier
        self.cfg = cfg
        self.workers = workers

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        if ctx.size > self.cfg.max_size:
            finding = Finding("CONTENT_BYPASSED", self.name, "size")
            return Outcome(Action.CONTINUE, findings=(finding,), headers=((SCL_HEADER, "-1"),))
        # Here, on the loop's thread, as the store's connection wants; cheap unless it changed.
        self.classifier.refresh_if_due()
        message = ctx.message
        # Only our own results: every Authentication-Results field in the message came from the
        # client, whatever authserv-id it names.
        auth = auth_results(ctx.earlier)
        started = time.perf_counter()
        # Under load, in a worker process (``content.workers``); None: not now, score here.
        worker = self.workers.take(self.classifier, ctx.size) if self.workers is not None else None
        verdict: ContentVerdict
        if worker is not None and self.workers is not None:
            if ctx.spooled is None:
                data = self._bytes(ctx, message)
            else:
                data = await asyncio.to_thread(self._bytes, ctx, message)
            verdict = await self.workers.score(worker, data, auth)
            observe_classifier(time.perf_counter() - started, "worker")
        else:
            if ctx.size > INLINE_LIMIT:
                # The parse moves to the worker thread too: it is the larger part of the work, and
                # a message kept in a file is read there (its text window, ``message_file.TEXT_WINDOW``).
                verdict = await asyncio.to_thread(self._score, ctx, message, auth)
                path = "thread"
            else:
                verdict = self._score(ctx, message, auth)
                path = "inline"
            elapsed = time.perf_counter() - started
            observe_classifier(elapsed, path)
            if self.workers is not None:
                self.workers.note(elapsed)
        cues = ",".join(name for name, _ in verdict.findings[:6])
        detail = f"p={verdict.probability:.4f} pcl={verdict.pcl}" + (f" {cues}" if cues else "")
        finding = Finding(f"SCL_{verdict.scl}", self.name, detail)
        # The phishing level is its own verdict ([policy] pcl_*); its finding weighs 0 in the total.
        lures = ",".join(name for name, _ in verdict.findings if name.startswith("PHISH_"))
        phishing = Finding(f"PCL_{verdict.pcl}", self.name, lures[:300])
        headers = ((SCL_HEADER, str(verdict.scl)), (REPORT_HEADER, report(verdict)))
        return Outcome(
            Action.CONTINUE, None, (finding, phishing, *lookalike_findings(verdict, self.name)), headers
        )

    def _score(self, ctx: StageContext, message: MessageView | None, auth: dict[str, str]) -> ContentVerdict:
        return self.classifier.score(self._bytes(ctx, message), message.mime if message else None, auth)

    @staticmethod
    def _bytes(ctx: StageContext, message: MessageView | None) -> bytes:
        """What is scored: the message, or the text window of one kept in a file (read once, for
        this and for the view's parse)."""
        if message is None:
            return text_of(ctx.data, ctx.spooled)
        return ctx.data if ctx.spooled is None else message.text


def lookalike_findings(verdict: ContentVerdict, agent: str) -> tuple[Finding, ...]:
    """One ``LOOKALIKE_OWN_DOMAIN`` finding naming the hosts that imitate an accepted domain."""
    if not verdict.lookalikes:
        return ()
    detail = "; ".join(hit.describe() for hit in verdict.lookalikes[:3])
    return (Finding("LOOKALIKE_OWN_DOMAIN", agent, detail[:300]),)


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
    antispam = True  # exempt sessions skip it, as they skip the loaded filter
    fail_open = False

    def __init__(
        self,
        load: Callable[[], SpamClassifier],
        cfg: ContentFilterConfig,
        error: str,
        retry_interval: float = 10.0,
        workers: ScoringWorkers | None = None,
    ) -> None:
        self._load = load
        self._workers = workers
        self.cfg = cfg
        self._error = error
        self._retry_interval = retry_interval
        self._tried_at = time.monotonic()
        self._agent: ContentFilter | None = None

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        if self._agent is None and time.monotonic() - self._tried_at >= self._retry_interval:
            self._tried_at = time.monotonic()
            try:
                self._agent = ContentFilter(await asyncio.to_thread(self._load), self.cfg, self._workers)
            except Exception as exc:
                self._error = str(exc)
        if self._agent is None:
            raise RuntimeError(f"the classifier cannot be loaded: {self._error}")
        return await self._agent.check(stage, ctx)
