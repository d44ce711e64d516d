"""Site learning at end of data: what the site's own mail teaches the content model.

After Stalwart's "strong signals only": the model learns from evidence an attacker cannot
manufacture, never from its own guesses.

* **Outbound memory.** A local user's message (an authenticated or relay-permitted session,
  the ones SPF and DMARC do not check) that is accepted leaves its Message-ID and its outside
  recipients in the policy store (``sent:``, ``corr:``; ``[learning] sent_ttl`` and
  ``correspondent_ttl``).
* **Replies and correspondents, as ham.** An inbound message whose In-Reply-To or References
  names a remembered Message-ID gets ``REPLY_TO_LOCAL``; one whose author is a remembered
  correspondent of one of its recipients gets ``KNOWN_CORRESPONDENT``. Both weigh -3 (one of
  them per message), so content alone (SCL 9 at most) cannot push such mail to the reject
  threshold of 7, while content with any other bad sign still can. When the message is then
  accepted (neither refused, quarantined, discarded nor flagged) it is learned as ham, unless
  the content filter alone rated it at or above its reject SCL: a strong sender signal against
  a strong content verdict is most often a correspondent's stolen account, and a conflict
  teaches nothing (a person releasing or reporting it decides instead).
* **Spam reports.** Mail to a ``spam_report_address`` from a local user gets ``SPAM_REPORT``;
  the messages it carries (:func:`edgeward.content.sitelearn.reported_messages`) are learned
  as spam. A report addressed only to report addresses is acknowledged with a tracking
  ``DISCARD`` and not delivered: the address is a mailbox of the gateway, not of a person.
  From outside it is ordinary mail (``SPAM_REPORT_OUTSIDER``, logged): anyone on the internet
  could otherwise teach the site's model.
* **Traps.** Mail to a ``trap_address`` is discarded (``TRAP_HIT``, tracked as ``DISCARD``),
  never delivered, whoever else it was addressed to: no one legitimately writes to a trap, so
  a message that names one is a run over a harvested list. From outside it is learned as spam.

Security: the reply and correspondent signals count only when this gateway's own checks
authenticated the author (:func:`author_authenticated`: DMARC pass, or without a DMARC
verdict an SPF or DKIM pass aligned with the From domain). In-Reply-To, References and From
are written by the sender: without that guard anyone who once saw a local user's Message-ID, or
knows whom the site writes to, could forge a reply and teach the model that their spam is ham.
Learning is handed to :class:`~edgeward.content.sitelearn.SiteLearner`, which never waits,
so nothing here delays or fails a ``250``; the lookups before it are bounded (at most
``MAX_REFERENCES`` Message-IDs and 20 recipients). The listener runs before the spool write,
so a message the spool then refuses may still be remembered: harmless, as its sender retries
the same message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from email.utils import getaddresses

from edgeward.config.schema import LearningConfig
from edgeward.content.sitelearn import Lesson, Remember, SiteLearner, correspondent_key, sent_key
from edgeward.filters.agents.relay import domain_matches
from edgeward.filters.agents.spf import spf_from_findings
from edgeward.filters.base import Stage, StageContext
from edgeward.filters.verdict import Verdict
from edgeward.headers import HeaderBlock
from edgeward.message_file import text_of
from edgeward.ports import PolicyStore, PolicyStoreError
from edgeward.senderauth.dmarc import OrganizationalDomains
from edgeward.types import Action, Finding, Outcome

__all__ = ["SiteLearning", "author_authenticated", "referenced_ids"]

log = logging.getLogger("edgeward.learning")

NAME = "site-learning"
_MSG_ID = re.compile(r"<([^<>\s]{1,500})>")
# Each is one policy-store lookup before the 250: In-Reply-To and the newest References (the
# ones that can name our message in a long thread) up to this many.
MAX_REFERENCES = 10
_ACCEPTED = (Action.CONTINUE, Action.ACCEPT)


def referenced_ids(headers: HeaderBlock) -> list[str]:
    """The Message-IDs of In-Reply-To and the newest References, without angle brackets."""
    reply = _MSG_ID.findall(headers.get("In-Reply-To"))[:MAX_REFERENCES]
    refs = _MSG_ID.findall(headers.get("References"))[-MAX_REFERENCES:]
    return list(dict.fromkeys([*reply, *reversed(refs)]))[:MAX_REFERENCES]


def author(headers: HeaderBlock) -> str | None:
    """The one From address, lower-cased, or None (none, several, or unparsable)."""
    found = [a for _, a in getaddresses(headers.get_all("From")) if a]
    if len(found) != 1 or found[0].count("@") != 1:
        return None
    return found[0].lower()


def author_authenticated(
    findings: Iterable[Finding], author_domain: str, org: Callable[[str], str] | None = None
) -> bool:
    """Whether this gateway's own SPF, DKIM or DMARC result vouches for the From domain.

    DMARC's verdict is taken when there is one; without it (the domain publishes no record, or
    DMARC is off) an SPF (MAIL FROM) or DKIM pass must align with the From domain in DMARC's
    relaxed sense (RFC 7489 §3.1: the same organisational domain, ``org``).
    """
    organisation = org or OrganizationalDomains()

    def _aligned(domain: str) -> bool:
        domain = domain.lower().rstrip(".")
        return bool(domain) and organisation(domain) == organisation(author_domain)

    found = list(findings)
    mine = [f for f in found if f.agent == "sender-auth"]
    dmarc = [f for f in mine if f.name.startswith("DMARC_") and f.name != "DMARC_FROM_INVALID"]
    if any(f.name.startswith("DMARC_FAIL") for f in dmarc):
        return False
    if any(f.name == "DMARC_PASS" and f"header.from={author_domain} " in f"{f.detail} " for f in dmarc):
        return True
    for f in mine:
        if f.name == "DKIM_PASS" and _aligned(f.detail.removeprefix("d=").split(" ", 1)[0]):
            return True
    spf = spf_from_findings(found)
    return spf is not None and spf.result == "pass" and spf.identity == "mailfrom" and _aligned(spf.domain)


def _content_scl(findings: Iterable[Finding]) -> int:
    """The content filter's SCL (``SCL_<n>``), -1 when it did not rate the message."""
    for f in findings:
        if f.agent == "content-filter" and f.name.startswith("SCL_") and f.name[4:].isdigit():
            return int(f.name[4:])
    return -1


def _local(ctx: StageContext) -> bool:
    return bool(ctx.session.authenticated) or ctx.session.may_relay


class SiteLearning:
    """Recognises replies, correspondents, spam reports and traps; hands lessons to the learner."""

    name = NAME
    stages = frozenset({Stage.EOD})
    antispam = False  # a local user's report must be seen although their session is exempt
    fail_open = True  # a lesson missed is better than a message refused

    def __init__(
        self,
        cfg: LearningConfig,
        accepted_domains: Iterable[str],
        store: PolicyStore | None,
        learner: SiteLearner | None = None,
        *,
        content_learning: bool = True,
        conflict_scl: int = 7,
    ) -> None:
        self.cfg = cfg
        self.accepted = frozenset(d.lower().rstrip(".") for d in accepted_domains)
        self.store = store
        # Lessons need the worker and a live model to teach; recognition needs only the store.
        self.learner = learner if cfg.enabled and content_learning else None
        self.conflict_scl = conflict_scl
        self.traps = frozenset(cfg.trap_addresses)
        self.reports = frozenset(cfg.spam_report_address)
        # The public suffix list takes about 0.1 s to build: once here, not on a message's time.
        self._org = OrganizationalDomains() if cfg.enabled and (cfg.replies or cfg.correspondents) else None

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        rcpts = [str(r).lower() for r in ctx.recipients]
        local = _local(ctx)
        if trapped := [r for r in rcpts if r in self.traps]:
            who = "local sender, not learned" if local else "learned as spam"
            trap = Finding("TRAP_HIT", self.name, f"{trapped[0]} ({who})")
            return Outcome(Action.DISCARD, findings=(trap,))
        if not self.cfg.enabled:
            return Outcome.proceed()
        reports = [r for r in rcpts if r in self.reports] if self.cfg.reports else []
        if reports and local:
            finding = Finding("SPAM_REPORT", self.name, f"to {reports[0]}")
            # Addressed to the report address alone it is for the gateway: acknowledged, not delivered.
            action = Action.DISCARD if len(reports) == len(rcpts) else Action.CONTINUE
            return Outcome(action, findings=(finding,))
        findings: list[Finding] = []
        if reports:
            log.warning("spam report to %s from outside (%s, %s) ignored", reports[0], ctx.mail_from,
                        ctx.session.peer.ip)  # fmt: skip
            detail = f"to {reports[0]} from {ctx.session.peer.ip}"
            findings.append(Finding("SPAM_REPORT_OUTSIDER", self.name, detail))
        if not local and ctx.headers is not None:
            known = await self._recognise(ctx.headers, rcpts, ctx.earlier)
            findings.extend(known)
        return Outcome.proceed(*findings)

    async def _recognise(
        self, headers: HeaderBlock, rcpts: list[str], earlier: tuple[Finding, ...]
    ) -> list[Finding]:
        """``REPLY_TO_LOCAL`` or ``KNOWN_CORRESPONDENT`` for an authenticated author, or nothing."""
        cfg, store = self.cfg, self.store
        sender = author(headers)
        if store is None or sender is None or self._org is None:
            return []
        if not author_authenticated(earlier, sender.rpartition("@")[2], self._org):
            return []
        try:
            if cfg.replies:
                for message_id in referenced_ids(headers):
                    if (local := await store.get(sent_key(message_id))) is not None:
                        detail = f"{sender} re <{message_id}> of {local}"
                        return [Finding("REPLY_TO_LOCAL", self.name, detail)]
            if cfg.correspondents:
                for rcpt in rcpts[:20]:
                    if await store.get(correspondent_key(rcpt, sender)) is not None:
                        return [Finding("KNOWN_CORRESPONDENT", self.name, f"{sender} known to {rcpt}")]
        except PolicyStoreError as exc:
            log.warning("site-learning: the policy store could not answer: %s", exc)
        return []

    async def learned(self, ctx: StageContext, verdict: Verdict) -> None:
        """After the verdict (``filters.policy.VerdictListener``): queue what it teaches."""
        learner = self.learner
        if learner is None:
            return
        names = {f.name for f in verdict.findings if f.agent == self.name}
        local = _local(ctx)
        # A message kept in a file teaches through its text window, as the classifier reads it.
        data = text_of(ctx.data, ctx.spooled)
        if "TRAP_HIT" in names:
            if not local and self.cfg.traps:
                learner.submit(Lesson("trap", data, True))
            return
        if "SPAM_REPORT" in names:
            learner.submit(Lesson("report", data, True))
            if verdict.action is Action.DISCARD:
                return
        if verdict.action not in _ACCEPTED or verdict.flagged:
            return  # refused, quarantined, dropped or flagged: not evidence of ham
        if local:
            self._remember(ctx)
        elif _content_scl(verdict.findings) >= self.conflict_scl:
            return
        elif "REPLY_TO_LOCAL" in names:
            learner.submit(Lesson("reply", data, False))
        elif "KNOWN_CORRESPONDENT" in names:
            learner.submit(Lesson("correspondent", data, False))

    def _remember(self, ctx: StageContext) -> None:
        cfg = self.cfg
        if self.learner is None or ctx.mail_from is None or ctx.mail_from.is_null:
            return
        if not (cfg.replies or cfg.correspondents):
            return
        outside = tuple(str(r).lower() for r in ctx.recipients if not domain_matches(r.domain, self.accepted))
        if not outside:
            return  # internal mail does not leave the organisation: nobody outside to remember
        message_id = ctx.headers.get("Message-ID").strip() if ctx.headers is not None else ""
        found = _MSG_ID.findall(message_id)
        job = Remember(
            sender=str(ctx.mail_from),
            message_id=found[0] if found and cfg.replies else "",
            recipients=outside if cfg.correspondents else (),
            sent_ttl=cfg.sent_ttl,
            correspondent_ttl=cfg.correspondent_ttl,
        )
        self.learner.submit(job)
