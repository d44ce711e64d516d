"""The anti-virus agent: every scan engine over every message, at end of data, before the 250.

The message's items (the one bounded MIME walk, ``MessageView.walk``, shared with the attachment
filter) go to the multi-engine policy
(``scanning.policy``; the walk's own structural findings are the attachment filter's to report,
so they count once), which runs the engines concurrently under their own time limits and
says what they found and whether enough of them answered ([antivirus] ``require``). Then, in
this order:

1. a hit whose action is a hard one decides: an infection (``AV_INFECTED``, and the hits of
   block lists such as a hash list or YARA rules) takes ``[antivirus] action``: reject with
   ``550 5.7.1 Virus found: <signature> (<part>)`` by default, or quarantine, or discard; an
   Office finding takes its own action from ``[antivirus.office]``. A virus found by one engine
   is refused even when another engine is down: the answer is already known;
2. a scan that missed the bias is unscanned: ``451 4.7.0 Virus scanner unavailable, try again
   later`` (``on_unavailable = "tempfail"``, the default), so the client keeps the message; or,
   when only item sizes stopped it (no outage), ``552 5.3.4`` (``unscannable = "reject"``),
   since retrying cannot help;
3. otherwise the message goes on, carrying the findings of hits whose action is ``score`` for
   the score table, and ``AV_UNAVAILABLE`` for engines that failed when the bias was still met.
   When the bias was met it is stamped ``X-Edgeward-AV: scanned by <engines that answered>``
   (what amavis's ``X-Virus-Scanned`` tells a mail administrator: this copy went through the
   scanners; a message the operator let through unscanned gets ``X-Edgeward-AV: unscanned``).

A hard control (``antispam = False``): safe senders, the IP allow list and ``bypass_antispam``
sessions are still scanned, since an infected message from a trusted partner is the usual case.
It runs before the content filter, so an infected message is never learned from or scored.

With a notifier (``notify``), each infection the agent acts on (reject, quarantine, discard)
is also a ``virus`` event for the administrators; emitting only queues it.

Security: no path here gives ``250`` to a message the engines did not answer for, unless the
operator set ``on_unavailable = "accept"``. Signature names and part paths come from engines
and mail; they are cut to printable ASCII before they reach a reply line.
"""

from __future__ import annotations

import asyncio
import re

from edgeward.config.antivirus import AntivirusConfig
from edgeward.filters.base import Stage, StageContext
from edgeward.message_file import MessageFile
from edgeward.notify.events import Event, EventSink
from edgeward.ports import ScanHit, ScanItem
from edgeward.scanning.policy import MultiEnginePolicy, ScanReport
from edgeward.scanning.walk import Walk
from edgeward.types import Action, Finding, Outcome, Reply

UNAVAILABLE = Reply(451, "4.7.0", "Virus scanner unavailable, try again later")
UNSCANNABLE = Reply(552, "5.3.4", "Message content too large to scan for viruses")
INLINE_LIMIT = 256 * 1024
STAMP_HEADER = "X-Edgeward-AV"
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")
# When several hits decide differently, the strongest wins: a refusal the sender hears about
# beats holding a copy, which beats dropping it.
_STRENGTH = {"reject": 3, "quarantine": 2, "discard": 1}


def printable(text: str, limit: int = 120) -> str:
    """``text`` safe for a reply line: anything but printable ASCII becomes ``_``, long values are cut."""
    cleaned = _UNPRINTABLE.sub("_", text).strip()
    return cleaned[:limit] + ("..." if len(cleaned) > limit else "")


def message_items(data: bytes, walk: Walk | None, spooled: MessageFile | None = None) -> list[ScanItem]:
    """What every engine scans: the walk's items (decoded parts and archive members).

    The whole message is added when the walk found no parts or was cut short by a bound: clamd,
    which parses MIME and archives itself, then reads what the walk could not reach. For a
    message kept in a file (``spooled``) that item is read from the file, and it is added as
    well when any item is ``partial`` (a large leaf the walk kept only the beginning of): clamd
    then reads the whole message rather than those beginnings (``clamd.clamd_items``). Engines
    that need bytes in memory skip such items; they are only configured with
    ``WalkLimits.hold_leaves``, under which the walk makes no partial item.
    """
    items = list(walk.items) if walk is not None else []
    if spooled is not None:
        if not items or walk is None or walk.cut or any(item.partial for item in items):
            items.append(ScanItem(b"", "message", source=spooled))
        return items
    if not items or walk is None or walk.cut:
        items.append(ScanItem(data, "message"))
    return items


def _file_of(ctx: StageContext) -> MessageFile | None:
    return ctx.message.file if ctx.message is not None else None


class Antivirus:
    """Scan with every engine; refuse infected mail, defer mail the engines could not scan."""

    name = "antivirus"
    stages = frozenset({Stage.EOD})
    antispam = False
    fail_open = False

    def __init__(
        self, policy: MultiEnginePolicy, cfg: AntivirusConfig, notifier: EventSink | None = None
    ) -> None:
        self.policy = policy
        self.cfg = cfg
        self.notifier = notifier

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        walk = None
        if ctx.message is not None:
            message = ctx.message
            # The walk decodes and unpacks: CPU work that, for a large message, would stall every
            # other session on this loop. It is cached on the message for the other agents.
            big = message.size > INLINE_LIMIT
            walk = await asyncio.to_thread(lambda: message.walk) if big else message.walk
        report = await self.policy.scan(message_items(ctx.data, walk, ctx.spooled or _file_of(ctx)))
        outcome = self.decide(report)
        if self.notifier is not None:
            self._tell(report, outcome, ctx)
        return outcome

    def _tell(self, report: ScanReport, outcome: Outcome, ctx: StageContext) -> None:
        hard = [(hit, action) for hit in report.hits if (action := self.action_for(hit)) != "score"]
        if not hard or self.notifier is None:
            return
        hit, action = max(hard, key=lambda pair: _STRENGTH[pair[1]])
        self.notifier.emit(Event.make(
            "virus", "warning", f"{hit.signature or hit.name} found by {hit.engine} ({action})",
            signature=hit.signature or hit.name, engine=hit.engine, part=hit.path, action=action,
            finding=hit.name, hits=len(report.hits), sender=str(ctx.mail_from or ""),
            recipients=[str(r) for r in ctx.recipients][:10], client_ip=ctx.session.peer.ip,
            msg_id=ctx.msg_id, reply=str(outcome.reply) if outcome.reply else "",
        ))  # fmt: skip

    def decide(self, report: ScanReport) -> Outcome:
        """The outcome for one policy result (separate so ``av test`` can show it)."""
        findings = [self._finding(hit) for hit in report.hits]
        for failure in report.failed:
            name = "AV_UNSCANNABLE" if failure.too_large else "AV_UNAVAILABLE"
            detail = f"engine={failure.engine} {printable(failure.reason, 300)}"
            findings.append(Finding(name, self.name, detail))
        hard = [(hit, action) for hit in report.hits if (action := self.action_for(hit)) != "score"]
        if hard:
            hit, action = max(hard, key=lambda pair: _STRENGTH[pair[1]])
            if action == "reject":
                return Outcome(Action.REJECT, self._refusal(hit), tuple(findings))
            held = Action.QUARANTINE if action == "quarantine" else Action.DISCARD
            return Outcome(held, None, tuple(findings))
        if not report.scanned:
            if report.unscannable and self.cfg.unscannable == "reject":
                return Outcome(Action.REJECT, UNSCANNABLE, tuple(findings))
            if not report.failed:  # no engine configured at all: say so in the logs
                findings.append(Finding("AV_UNAVAILABLE", self.name, "no scan engine is enabled"))
            if self.cfg.on_unavailable == "tempfail":
                return Outcome(Action.TEMPFAIL, UNAVAILABLE, tuple(findings))
            return Outcome(Action.CONTINUE, None, tuple(findings), ((STAMP_HEADER, "unscanned"),))
        stamp = "scanned by " + ", ".join(printable(name, 40) for name in report.answered)
        return Outcome(Action.CONTINUE, None, tuple(findings), ((STAMP_HEADER, stamp),))

    def action_for(self, hit: ScanHit) -> str:
        """What a hit does: Office findings as [antivirus.office] says, anything else is malware."""
        return self.cfg.office.action_for(hit.name) or self.cfg.action

    def _finding(self, hit: ScanHit) -> Finding:
        detail = f"engine={hit.engine} signature={printable(hit.signature)} path={printable(hit.path, 200)}"
        return Finding(hit.name, self.name, detail)

    def _refusal(self, hit: ScanHit) -> Reply:
        where = printable(hit.path, 80)
        if self.cfg.office.action_for(hit.name) is None:  # a malware engine: clamd, YARA, a hash list
            return Reply(550, "5.7.1", f"Virus found: {printable(hit.signature or hit.name)} ({where})")
        what = printable(hit.signature or hit.name)
        return Reply(550, "5.7.1", f"Dangerous content found: {what} ({where})")
