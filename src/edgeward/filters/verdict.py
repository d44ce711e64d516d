"""One verdict per transaction, built over the whole session.

``Ledger`` keeps what the stages found. CONNECT and HELO findings belong to the session and
count in every transaction of it (a new EHLO replaces the HELO ones); MAIL, RCPT, DATA and EOD
findings belong to the transaction, which RSET, a new MAIL or a finished message ends. Headers
agents ask to stamp are kept the same way, so an SPF result at MAIL is both counted and stamped.
Findings of a command that was refused are tracked with that refusal and not kept
(``filters.policy``): a recipient refused at RCPT does not weigh on the message to the others.

``decide`` turns the end of data into a ``Verdict``, by the first rule that applies:

1. a final outcome of an EOD agent (a hard control such as size or hop count, or an agent's own
   quarantine): ``decided_by = "agent <name>"``;
2. an exempt message (``filters.exemptions``): delivered, ``"exempt: <reason>"``;
3. the total of every finding's score against the thresholds, most severe first:
   ``"threshold reject 7 (total 8.5)"``, and the phishing level (the content filter's
   ``PCL_<n>`` finding) against the phishing thresholds: ``"phishing pcl_quarantine 7 (PCL 8)"``.
   The more severe action of the two wins (the spam rule on a tie); none reached:
   ``"no threshold (total 2)"``.

In observe-only mode rule 3 is logged as what would have happened and not enforced, as the
pipeline does for agents.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeward.filters.base import Stage
from edgeward.filters.pipeline import StageResult
from edgeward.filters.scoring import TEMPFAILED, ThresholdHit, Thresholds, severity
from edgeward.types import Action, Address, Finding, Reply

_SESSION_STAGES = (Stage.CONNECT, Stage.HELO)
# A phishing refusal says so: an honest sender whose mail looked like a lure learns why.
PHISHING_REJECTED = Reply(550, "5.7.1", "Message rejected as suspected phishing")


@dataclass(slots=True)
class _Part:
    # Tuples, not lists: most parts stay empty, and the empty tuple costs an idle session nothing.
    findings: tuple[Finding, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    def add(self, result: StageResult) -> None:
        if result.outcome.findings:
            self.findings += result.outcome.findings
        if result.outcome.headers:
            self.headers += result.outcome.headers


class Ledger:
    """The findings and stamps of one session and its open transaction."""

    def __init__(self) -> None:
        self._session = {stage: _Part() for stage in _SESSION_STAGES}
        self._tx = _Part()
        # Each recipient's exemption as decided at its RCPT, so DATA and the end of data reuse
        # the answer instead of asking the policy store for the same lists again.
        self._recipient_exempt: dict[Address, str] | None = None

    def add(self, stage: Stage, result: StageResult) -> None:
        if stage in _SESSION_STAGES:
            self._session[stage].add(result)
        else:
            self._tx.add(result)

    def new_helo(self) -> None:
        """A new EHLO (after STARTTLS, or repeated) replaces what the last one found."""
        self._session[Stage.HELO] = _Part()
        self.new_transaction()

    def new_transaction(self) -> None:
        self._tx = _Part()
        self._recipient_exempt = None

    def recipient_exemption(self, recipient: Address) -> str | None:
        """The exemption noted for ``recipient`` in this transaction; None when none was."""
        known = self._recipient_exempt
        return None if known is None else known.get(recipient)

    def note_recipient_exemption(self, recipient: Address, reason: str) -> None:
        if self._recipient_exempt is None:
            self._recipient_exempt = {}
        self._recipient_exempt[recipient] = reason

    @property
    def findings(self) -> tuple[Finding, ...]:
        parts = (*self._session.values(), self._tx)
        return tuple(f for p in parts for f in p.findings)

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        parts = (*self._session.values(), self._tx)
        return tuple(h for p in parts for h in p.headers)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What happens to one message, and why."""

    action: Action
    reply: Reply | None
    findings: tuple[Finding, ...]
    headers: tuple[tuple[str, str], ...]
    total: float
    decided_by: str
    exempt: str = ""
    flagged: bool = False  # the stamp threshold was reached: X-Edgeward-Spam-Flag: YES

    @property
    def refused(self) -> bool:
        return self.action in (Action.REJECT, Action.TEMPFAIL, Action.DISCONNECT)


def total(findings: tuple[Finding, ...]) -> float:
    return round(sum(f.score for f in findings), 3)


def phishing_level(findings: tuple[Finding, ...]) -> int:
    """The highest ``PCL_<n>`` among ``findings`` (the content filter's), 0 when none."""
    levels = [f.name.removeprefix("PCL_") for f in findings if f.name.startswith("PCL_")]
    return max((int(n) for n in levels if n.isdigit()), default=0)


def _rule(score: float, pcl: int, thresholds: Thresholds) -> tuple[ThresholdHit, str] | None:
    """The threshold that decides: the spam total's or the phishing level's, the more severe."""
    hit = thresholds.hit(score)
    phish = thresholds.phishing_hit(pcl) if pcl else None
    if phish is not None and (hit is None or severity(phish.action) < severity(hit.action)):
        return phish, f"phishing {phish.name} {phish.value:g} (PCL {pcl})"
    if hit is not None:
        return hit, f"threshold {hit.name} {hit.value:g} (total {score:g})"
    return None


def decide(
    ledger: Ledger, eod: StageResult, thresholds: Thresholds, *, exempt: str = "", observe_only: bool = False
) -> Verdict:
    """The verdict at end of data; ``eod`` must already be in ``ledger``."""
    findings, headers = ledger.findings, ledger.headers
    score = total(findings)
    if eod.action.is_final:
        action, reply = eod.action, eod.outcome.reply
        return Verdict(action, reply, findings, headers, score, f"agent {eod.decided_by}", exempt)
    if exempt:
        return Verdict(Action.CONTINUE, None, findings, headers, score, f"exempt: {exempt}", exempt)
    decided = _rule(score, phishing_level(findings), thresholds)
    if decided is None:
        return Verdict(Action.CONTINUE, None, findings, headers, score, f"no threshold (total {score:g})")
    hit, rule = decided
    if observe_only:
        return Verdict(Action.CONTINUE, None, findings, headers, score, f"observe-only: would {rule}")
    flagged = thresholds.flagged(score)
    rejection = PHISHING_REJECTED if hit.name.startswith("pcl_") else thresholds.rejection
    reply = {Action.REJECT: rejection, Action.TEMPFAIL: TEMPFAILED}.get(hit.action)
    return Verdict(hit.action, reply, findings, headers, score, rule, flagged=flagged)
