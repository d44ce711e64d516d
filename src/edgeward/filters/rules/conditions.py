"""The condition evaluator: which transport rules match a message, and why.

``MessageFacts`` is what a rule can ask about a message, gathered once: the envelope, the
direction, the decoded header fields, subject and text body parts (``content.mime``, bounded),
the attachments from the scanning walk (every candidate name and the true type read from the
content, archive members included), the content filter's SCL and the size. ``RuleSet`` holds
the rules in evaluation order with their patterns compiled and evaluates them:

- a rule applies when every condition it gives holds and none of its exceptions does (inside
  one condition, any listed item may hold: ``to_domains = ["a.test", "b.test"]``);
- rules run by priority, then file order; a matching rule with ``stop`` ends the evaluation, as
  does one that rejects or disconnects (nothing after it can happen to the message);
- words match case-insensitively anywhere in the text; patterns are RE2 (``config.rules``), so
  a match costs time linear in the text whatever the pattern.

Direction, as Exchange's FromScope: ``outbound`` for a session that authenticated or has relay
rights (it may send anywhere, so it is ours), ``inbound`` for every other.

Security: the facts are read from the message with the bounded parsers every agent shares; a
rule never sees undecoded header folding, and the evaluator never raises on message content
(only a group source that cannot answer raises, which the agent turns into ``451``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import re2

from edgeward.config.rules import RuleConditions, TransportRule, compile_pattern, ordered
from edgeward.filters.base import SessionInfo
from edgeward.filters.message import MessageView
from edgeward.filters.rules.groups import FileGroups, GroupSource
from edgeward.scanning.truetype import refine
from edgeward.types import Address, Finding

__all__ = ["Attachment", "MessageFacts", "RuleMatch", "RuleSet", "direction_of", "scl_of"]

MAX_TEXT = 1_000_000  # characters of body text searched per message


def direction_of(info: SessionInfo) -> str:
    return "outbound" if info.authenticated or info.may_relay else "inbound"


def scl_of(findings: Iterable[Finding], exempt: str = "") -> int | None:
    """The content filter's SCL from its ``SCL_<n>`` finding; -1 for exempt mail; None unrated."""
    for f in findings:
        if f.name.startswith("SCL_") and f.name[4:].lstrip("-").isdigit():
            return int(f.name[4:])
    return -1 if exempt else None


@dataclass(frozen=True, slots=True)
class Attachment:
    names: tuple[str, ...]
    true_type: str
    declared_type: str


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the conditions look at, for one message."""

    sender: Address | None
    recipients: tuple[Address, ...]
    direction: str
    headers: tuple[tuple[str, str], ...] = ()  # lower-case name, decoded value
    texts: tuple[str, ...] = ()  # decoded text/plain and text/html parts
    attachments: tuple[Attachment, ...] = ()
    scl: int | None = None
    size: int = 0

    @classmethod
    def of(
        cls,
        view: MessageView,
        *,
        sender: Address | None,
        recipients: Sequence[Address],
        direction: str,
        scl: int | None,
        refine_types: bool = True,
    ) -> MessageFacts:
        """The facts of ``view``; ``refine_types`` reads the text subtype of attachments the walk
        typed coarsely (``truetype.refine``), which only an ``attachment_types`` rule needs."""
        mime = view.mime
        texts, budget = [], MAX_TEXT
        for part in mime.texts:
            texts.append(part.text[:budget])
            budget -= len(texts[-1])
            if budget <= 0:
                break
        attachments = tuple(
            Attachment(
                tuple(n.lower() for n in e.names),
                (refine(e.item) if refine_types else e.item.true_type).lower(),
                e.item.declared_type.lower(),
            )
            for e in view.walk.entries
            if e.names or e.member or not e.item.declared_type.lower().startswith(("text/", "multipart/"))
        )
        return cls(sender, tuple(recipients), direction, tuple(mime.headers), tuple(texts), attachments,
                   scl, view.size)  # fmt: skip

    @property
    def subject(self) -> str:
        return next((v for n, v in self.headers if n == "subject"), "")

    def header_values(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self.headers if n == key]


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A rule that applies, with the conditions that held (for ``rules test`` and the finding)."""

    rule: TransportRule
    held: tuple[str, ...]


def _contains(text: str, words: Iterable[str]) -> bool:
    low = text.lower()
    return any(w in low for w in words)


def _in_domains(address: Address | None, domains: Iterable[str]) -> bool:
    if address is None or address.is_null:
        return False
    d = address.domain.lower().rstrip(".")
    return any(d == x or d.endswith("." + x) for x in domains)


def _name_matches(name: str, patterns: Iterable[str]) -> bool:
    # fnmatchcase on lower-cased names: "*.exe" is a suffix test, never a path glob.
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _type_matches(kind: str, patterns: Iterable[str]) -> bool:
    return any(kind == p or (p.endswith("/*") and kind.startswith(p[:-1])) for p in patterns)


class RuleSet:
    """The enabled rules in evaluation order, patterns compiled once."""

    def __init__(self, rules: Iterable[TransportRule], groups: GroupSource | None = None) -> None:
        self.rules = [r for r in ordered(tuple(rules)) if r.enabled]
        self.groups: GroupSource = groups if groups is not None else FileGroups()
        self._patterns: dict[str, re2._Regexp[str]] = {}
        # Whether a rule reads attachment types, so the facts need the text subtypes.
        self.reads_types = any(c.attachment_types for r in self.rules for c in (r.conditions, r.exceptions))
        for rule in self.rules:
            for conds in (rule.conditions, rule.exceptions):
                for pattern in (conds.subject_matches, conds.subject_or_body_matches,
                                *(h.matches for h in conds.headers)):  # fmt: skip
                    if pattern is not None and pattern not in self._patterns:
                        self._patterns[pattern] = compile_pattern(pattern)

    def _search(self, pattern: str, text: str) -> bool:
        return self._patterns[pattern].search(text) is not None

    async def evaluate(self, facts: MessageFacts) -> list[RuleMatch]:
        """Every rule that applies, in order, up to the first that stops the evaluation."""
        matched: list[RuleMatch] = []
        for rule in self.rules:
            held = await self._held(rule.conditions, facts)
            if held is None:
                continue
            if any([await self._check(name, rule.exceptions, facts) for name in rule.exceptions.given()]):
                continue
            matched.append(RuleMatch(rule, tuple(held)))
            if rule.stop or rule.actions.reject is not None or rule.actions.disconnect:
                break
        return matched

    async def _held(self, conds: RuleConditions, facts: MessageFacts) -> list[str] | None:
        """The names of the conditions given, when all hold; None when one does not."""
        names = conds.given()
        for name in names:
            if not await self._check(name, conds, facts):
                return None
        return names

    async def _check(self, name: str, c: RuleConditions, f: MessageFacts) -> bool:
        sender = str(f.sender).lower() if f.sender is not None else ""
        rcpts = [str(r).lower() for r in f.recipients]
        if name == "from_":
            return sender in c.from_
        if name == "to":
            return any(r in c.to for r in rcpts)
        if name == "from_domains":
            return _in_domains(f.sender, c.from_domains)
        if name == "to_domains":
            return any(_in_domains(r, c.to_domains) for r in f.recipients)
        if name == "from_groups":
            return f.sender is not None and await self._member(c.from_groups, [f.sender])
        if name == "to_groups":
            return await self._member(c.to_groups, f.recipients)
        if name == "direction":
            return f.direction == c.direction
        if name == "headers":
            return any(self._header(h.name, h.contains, h.matches, f) for h in c.headers)
        if name == "subject_contains":
            return _contains(f.subject, c.subject_contains)
        if name == "subject_matches":
            return c.subject_matches is not None and self._search(c.subject_matches, f.subject)
        if name == "subject_or_body_contains":
            return any(_contains(t, c.subject_or_body_contains) for t in (f.subject, *f.texts))
        if name == "subject_or_body_matches":
            pattern = c.subject_or_body_matches
            return pattern is not None and any(self._search(pattern, t) for t in (f.subject, *f.texts))
        if name == "attachment":
            return bool(f.attachments) == c.attachment
        if name == "attachment_names":
            return any(_name_matches(n, c.attachment_names) for a in f.attachments for n in a.names)
        if name == "attachment_types":
            kinds = [a.true_type or a.declared_type for a in f.attachments]
            return any(_type_matches(k, c.attachment_types) for k in kinds)
        if name == "scl_min":
            return f.scl is not None and c.scl_min is not None and f.scl >= c.scl_min
        if name == "scl_max":
            return f.scl is not None and c.scl_max is not None and f.scl <= c.scl_max
        if name == "size_over":
            return c.size_over is not None and f.size > c.size_over
        raise AssertionError(f"condition {name} has no evaluator")  # a schema field without a check

    def _header(self, name: str, words: tuple[str, ...], pattern: str | None, f: MessageFacts) -> bool:
        values = f.header_values(name)
        if words and any(_contains(v, words) for v in values):
            return True
        return pattern is not None and any(self._search(pattern, v) for v in values)

    async def _member(self, groups: Iterable[str], addresses: Iterable[Address]) -> bool:
        for address in addresses:
            for group in groups:
                if await self.groups.member(group, address):
                    return True
        return False
