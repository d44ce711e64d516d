"""The transport rules agent (Exchange Edge's Edge Rule agent), at end of data.

It runs after ``content-filter`` so the ``scl_min``/``scl_max`` conditions see the SCL (on
Exchange the Edge Rule agent runs first and an SCL condition sees nothing unless the priorities
are swapped). It evaluates ``[[rules]]`` (``filters.rules.conditions``), reports one
``RULE_MATCH`` finding per matching rule (the detail is the rule name, which is how the rules
transform knows what to change after acceptance), and carries out the deciding actions:

- ``reject``: the rule's reply (default ``550 5.7.1 Delivery not authorized, message refused``,
  Exchange's SmtpRejectMessage); a 4xx code tempfails instead;
- ``disconnect``: ``421 4.7.0`` and close, without accepting;
- ``quarantine``: accepted into the quarantine (the changing actions of the matched rules still
  apply, so a released message is what would have been delivered);
- ``set_scl``: the finding ``RULE_SCL_<n>``, weighing n in the total;
- ``log_event_text``: the text logged (``edgeward.rules``, with the message id) and the finding
  ``RULE_LOG_EVENT`` (``<rule>: <text>``), so the tracking line of the message carries it;
- ``copy_to``: the finding ``RULE_COPY_TO`` (``<rule>: <addresses>``) records the copy; the
  rules transform adds the recipients and the ``Cc`` field.

A hard control: exemptions (allow lists, bypass rights) do not skip it, since rules are the
organisation's own policy (a disclaimer on an authenticated user's mail). A group source that
cannot answer gives ``451 4.3.0`` (``RULE_GROUP_TEMPERROR``): a rule that cannot be evaluated must
not silently pass a message it would have refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from edgeward.config.rules import TransportRule
from edgeward.filters.base import Stage, StageContext
from edgeward.filters.rules.conditions import MessageFacts, RuleMatch, RuleSet, direction_of, scl_of
from edgeward.filters.rules.groups import GroupSource
from edgeward.types import Action, Finding, Outcome, Reply

__all__ = ["NAME", "TransportRules", "decide", "matched_rules"]

log = logging.getLogger("edgeward.rules")

NAME = "transport-rules"
DISCONNECTED = Reply(421, "4.7.0", "Closing connection")
GROUPS_DOWN = Reply(451, "4.3.0", "Temporary local problem, please try again later")
INLINE_LIMIT = 256 * 1024  # past this the facts are gathered in a worker thread


def decide(matches: Iterable[RuleMatch]) -> Outcome:
    """The outcome of the matched rules: their findings and the first deciding action."""
    findings: list[Finding] = []
    final: Outcome | None = None
    for m in matches:
        acts = m.rule.actions
        findings.append(Finding("RULE_MATCH", NAME, m.rule.name))
        if acts.set_scl is not None:
            findings.append(Finding(f"RULE_SCL_{acts.set_scl}", NAME, m.rule.name))
        if acts.log_event_text:
            findings.append(Finding("RULE_LOG_EVENT", NAME, f"{m.rule.name}: {acts.log_event_text}"))
        if acts.copy_to:
            findings.append(Finding("RULE_COPY_TO", NAME, f"{m.rule.name}: {', '.join(acts.copy_to)}"))
        if final is not None:
            continue
        if acts.reject is not None:
            r = acts.reject
            reply = Reply(r.code, r.enhanced, r.text)
            final = Outcome(Action.REJECT if r.code >= 500 else Action.TEMPFAIL, reply)
        elif acts.disconnect:
            final = Outcome(Action.DISCONNECT, DISCONNECTED)
        elif acts.quarantine:
            final = Outcome(Action.QUARANTINE)
    if final is None:
        return Outcome(Action.CONTINUE, None, tuple(findings))
    return Outcome(final.action, final.reply, tuple(findings))


def matched_rules(rules: Iterable[TransportRule], findings: Iterable[Finding]) -> list[TransportRule]:
    """The rules this agent reported as matching, in their order (for the transform)."""
    names = {f.detail for f in findings if f.name == "RULE_MATCH" and f.agent == NAME}
    return [r for r in rules if r.name in names]


class TransportRules:
    """Transport rules: conditions and exceptions, reject/quarantine/disconnect/set SCL."""

    name = NAME
    stages = frozenset({Stage.EOD})
    antispam = False
    fail_open = False

    def __init__(self, rules: Iterable[TransportRule], groups: GroupSource | None = None) -> None:
        self.rules = RuleSet(rules, groups)

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        if not self.rules.rules or ctx.message is None:
            return Outcome.proceed()
        message = ctx.message

        def gather() -> MessageFacts:
            scl = scl_of(ctx.earlier, ctx.exempt)
            return MessageFacts.of(message, sender=ctx.mail_from, recipients=ctx.recipients,
                                   direction=direction_of(ctx.session), scl=scl,
                                   refine_types=self.rules.reads_types)  # fmt: skip

        # Decoding the parts is CPU work: a big message moves to a thread, as the content filter does.
        facts = await asyncio.to_thread(gather) if message.size > INLINE_LIMIT else gather()
        try:
            matches = await self.rules.evaluate(facts)
        except OSError as exc:
            log.error("transport-rules: the group source failed: %s", exc)
            return Outcome.tempfail(GROUPS_DOWN, Finding("RULE_GROUP_TEMPERROR", NAME, str(exc)))
        if matches:
            log.info("message %s: rules matched: %s", ctx.msg_id, ", ".join(m.rule.name for m in matches))
        for m in matches:
            if m.rule.actions.log_event_text:
                log.info("message %s: rule %s: %s", ctx.msg_id, m.rule.name, m.rule.actions.log_event_text)
        return decide(matches)
