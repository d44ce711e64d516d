"""The changing actions of the transport rules, applied to an accepted message.

The ``transport-rules`` agent decided which rules match (its ``RULE_MATCH`` findings name them);
this transform carries out what they change, in rule order: ``prepend_subject``,
``remove_headers``, ``add_headers`` (raw header edits, ``filters.rules.headers``), ``disclaimer``
(``filters.rules.disclaimer``, marked with ``X-Edgeward-Disclaimer: <rule>``), and the envelope:
``redirect_to`` replaces the recipients, ``bcc`` adds some, and ``copy_to`` adds some that
are also named in the ``Cc`` field (Exchange's CopyTo: a copy on record). The envelope change is asked for
through ``recipients`` before the message is changed, so the queue record (and the tracking
RECEIVE) carries the new recipients; added recipients have no DSN parameters.

In observe-only mode nothing changes (the matches are logged by the agent). A message whose
verdict drops it changes neither. Nothing here refuses mail.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from edgeward.config.rules import TransportRule, ordered
from edgeward.filters.agents.transport_rules import matched_rules
from edgeward.filters.rules.disclaimer import MARK_HEADER, add_disclaimer
from edgeward.filters.rules.headers import add_cc, add_header, prepend_subject, remove_headers, set_header
from edgeward.filters.transforms.base import Accepted
from edgeward.headers import parse_headers
from edgeward.types import Action, Address

__all__ = ["RuleChanges", "parse_address"]

log = logging.getLogger("edgeward.rules")


def parse_address(text: str) -> Address:
    local, _, domain = text.rpartition("@")
    return Address(local, domain.lower())


class RuleChanges:
    """Subject, headers, disclaimer and recipients, as the matched rules say."""

    name = "transport-rules"

    def __init__(self, rules: Iterable[TransportRule], *, observe_only: bool = False) -> None:
        self.rules = [r for r in ordered(tuple(rules)) if r.enabled and r.actions.changing]
        self.observe_only = observe_only

    def _matched(self, accepted: Accepted) -> list[TransportRule]:
        if self.observe_only or accepted.verdict.action is Action.DISCARD or accepted.verdict.refused:
            return []
        return matched_rules(self.rules, accepted.verdict.findings)

    def wanted(self, accepted: Accepted) -> bool:
        """Whether any rule changes ``accepted`` (so a message in a file is read whole)."""
        return bool(self._matched(accepted))

    def recipients(self, accepted: Accepted) -> tuple[Address, ...]:
        # A redirect replaces the message's own recipients; blind copies are kept whatever rule
        # order, so an auditing copy cannot be lost to a later redirect.
        rcpts, copies = list(accepted.recipients), list[str]()
        for rule in self._matched(accepted):
            if rule.actions.redirect_to:
                rcpts = [parse_address(a) for a in rule.actions.redirect_to]
            copies.extend(rule.actions.bcc)
            copies.extend(rule.actions.copy_to)
        for extra in copies:
            if all(str(r).lower() != extra for r in rcpts):
                rcpts.append(parse_address(extra))
        return tuple(rcpts)

    def apply(self, data: bytes, accepted: Accepted) -> bytes:
        for rule in self._matched(accepted):
            try:
                data = self._change(data, rule, accepted)
            except Exception:
                # A transform never refuses mail, and a bug here must not end the session after
                # the agents accepted: the message goes on without this rule's changes, logged.
                log.exception("message %s: rule %s: changes not applied", accepted.msg_id, rule.name)
        return data

    def _change(self, data: bytes, rule: TransportRule, accepted: Accepted) -> bytes:
        acts = rule.actions
        if acts.prepend_subject:
            data = prepend_subject(data, acts.prepend_subject)
        if acts.remove_headers:
            data = remove_headers(data, acts.remove_headers)
        for name, value in acts.add_headers.items():
            data = set_header(data, name, value)
        if acts.copy_to:
            data = add_cc(data, acts.copy_to)
        if acts.disclaimer is not None:
            data = self._disclaimer(data, rule, accepted)
        return data

    def _disclaimer(self, data: bytes, rule: TransportRule, accepted: Accepted) -> bytes:
        assert rule.actions.disclaimer is not None
        d = rule.actions.disclaimer
        marks = [v.strip().lower() for v in parse_headers(data).get_all(MARK_HEADER)]
        if rule.name.lower() in marks:
            return data
        result = add_disclaimer(data, d.text, d.html, signed=d.signed)
        if not result.parts:
            log.info("message %s: rule %s: no disclaimer added (%s)", accepted.msg_id, rule.name,
                     result.skipped)  # fmt: skip
            return data
        # Another rule's mark stays: each rule's disclaimer is added once.
        return add_header(result.data, MARK_HEADER, rule.name)
