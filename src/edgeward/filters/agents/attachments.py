"""The attachment filter (Exchange Edge's Attachment Filtering agent), at end of data.

It reads the message's one walk (``MessageView.walk``, ``scanning.walk``): every MIME leaf and
archive member with every name a client might show, its declared types and its true type.
``AttachmentRules`` matches them against ``[attachments]``'s lists (``FileName`` patterns,
declared ``ContentType``, ``TrueType`` read by libmagic); the first rule that matches an item
names it (``FileName *.exe``). What a match does is ``[attachments] action``:

- ``strip``: the message goes on; the findings (``ATTACH_BLOCKED``) tell the strip transform
  (``filters.transforms.strip``) to replace the attachments once the message is accepted and to
  quarantine the original. Inside a signed message a strip would break the signature, so
  ``signed_action`` (quarantine the whole message, or reject) applies instead.
- ``reject``: ``550 5.7.1 <reject_response> (<rule>: <name>)``.
- ``silent_delete``: accepted and dropped (Action.DISCARD, tracked).

The walk's structural findings (``MIME_*``, ``ARCHIVE_*``, ``ATTACH_NAME_HOSTILE``,
``ATTACH_TYPE_MISMATCH``) are reported here with their weights from the score table. A walk a
bound cut short is never treated as checked: ``incomplete_action`` refuses it (554 5.6.0, or
451 4.6.0). ``encrypted_action`` can refuse or quarantine encrypted archives outright.

A hard control: exemptions (``bypass_antispam``, allow lists) do not skip it, as Exchange's
agent is not skipped for them; ``exception_connectors`` does, by receive connector name.
"""

from __future__ import annotations

import asyncio
import fnmatch
from dataclasses import dataclass

from edgeward.config.attachments import TRUE_TYPES, AttachmentsConfig
from edgeward.filters.base import Stage, StageContext
from edgeward.filters.message import MessageView
from edgeward.scanning.archives import ArchiveLimits
from edgeward.scanning.truetype import refine
from edgeward.scanning.walk import EXECUTABLE_TYPES, Entry, Walk, WalkLimits
from edgeward.types import Action, Finding, Outcome, Reply

__all__ = ["AttachmentFilter", "AttachmentRules", "Block", "reads_text_subtypes", "walk_limits"]

NAME = "attachment-filter"
REPORT_HEADER = "X-Edgeward-Attachments"
# Walking is CPU work; past this size it moves to a worker thread, as the content filter does.
INLINE_LIMIT = 256 * 1024
INCOMPLETE = Reply(554, "5.6.0", "Message structure exceeds what this gateway can check for unsafe content")
INCOMPLETE_LATER = Reply(451, "4.6.0", "Message structure exceeds what this gateway can check now; try later")
ENCRYPTED = Reply(550, "5.7.1", "Message rejected: encrypted attachments cannot be checked for safety")
SIGNED = Reply(550, "5.7.1", "Message rejected: a signed message carries unacceptable attachments")
# Types libmagic reads only from binary signatures (none of its text tests names one), so a
# true-type list of these cannot match a text body part, whichever text subtype it is.
BINARY_TYPES = frozenset(TRUE_TYPES) | EXECUTABLE_TYPES


def walk_limits(cfg: AttachmentsConfig) -> WalkLimits:
    """The walk's bounds from ``[attachments.walk]``."""
    w = cfg.walk
    archive = ArchiveLimits(
        max_depth=w.archive_depth, max_members=w.archive_members, max_expanded_bytes=w.archive_expanded_bytes,
        max_ratio=w.archive_ratio,
    )  # fmt: skip
    return WalkLimits(max_depth=w.max_depth, max_parts=w.max_parts, max_decoded_bytes=w.max_decoded_bytes,
                      archive=archive)  # fmt: skip


def reads_text_subtypes(true_types: tuple[str, ...]) -> bool:
    """Whether a true-type list can tell text subtypes apart: it names more than binary types,
    so an item the walk typed ``coarse`` needs its subtype read (``truetype.refine``)."""
    return any(p.lower() not in BINARY_TYPES for p in true_types)


@dataclass(frozen=True, slots=True)
class Block:
    """One item a rule matched: the entry, the rule (``FileName *.exe``) and the name shown."""

    entry: Entry
    rule: str
    shown: str

    @property
    def detail(self) -> str:
        return f"{self.rule}: {self.shown} at {self.entry.item.path}"[:400]


class AttachmentRules:
    """The lists of ``[attachments]``, matched case-insensitively with shell patterns."""

    def __init__(self, cfg: AttachmentsConfig) -> None:
        self.file_names = tuple(p.lower() for p in cfg.file_names)
        self.content_types = tuple(p.lower() for p in cfg.content_types)
        self.true_types = tuple(p.lower() for p in cfg.true_types)
        self._refine = reads_text_subtypes(self.true_types)
        self.inside_archives = cfg.inside_archives

    def match(self, entry: Entry) -> str:
        """The first rule ``entry`` breaks, or ``""``."""
        if entry.member and not self.inside_archives:
            return ""
        for name in entry.names:
            lowered = name.lower()
            for pattern in self.file_names:
                if fnmatch.fnmatchcase(lowered, pattern):
                    return f"FileName {pattern}"
        for declared in entry.declared_types:
            for pattern in self.content_types:
                if declared and fnmatch.fnmatchcase(declared.lower(), pattern):
                    return f"ContentType {pattern}"
        true_type = (refine(entry.item) if self._refine else entry.item.true_type).lower()
        for pattern in self.true_types:
            if true_type and fnmatch.fnmatchcase(true_type, pattern):
                return f"TrueType {pattern}"
        return ""

    def blocked(self, walk: Walk) -> list[Block]:
        found: list[Block] = []
        for entry in walk.entries:
            rule = self.match(entry)
            if rule:
                found.append(Block(entry, rule, entry.item.name or entry.item.path))
        return found


class AttachmentFilter:
    """Block attachments by file name, declared type and true type, inside archives too."""

    name = NAME
    stages = frozenset({Stage.EOD})
    antispam = False
    fail_open = False

    def __init__(self, cfg: AttachmentsConfig) -> None:
        self.cfg = cfg
        self.rules = AttachmentRules(cfg)
        self.limits = walk_limits(cfg)

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        if ctx.session.connector.name in self.cfg.exception_connectors:
            return Outcome()
        message = ctx.message
        if message is None:
            message = (
                MessageView(ctx.data, ctx.headers, self.limits, ctx.spooled)
                if ctx.headers is not None
                else None
            )
        if message is None:
            return Outcome()
        if message.size > INLINE_LIMIT:
            walk = await asyncio.to_thread(lambda: message.walk)
        else:
            walk = message.walk
        return self.decide(walk)

    def decide(self, walk: Walk) -> Outcome:
        cfg = self.cfg
        findings = [Finding(n, NAME, d) for n, d in walk.findings]
        blocks = self.rules.blocked(walk)
        findings += [Finding("ATTACH_BLOCKED", NAME, b.detail) for b in blocks[:50]]
        found = tuple(findings)
        if walk.cut:
            reply = INCOMPLETE if cfg.incomplete_action == "reject" else INCOMPLETE_LATER
            action = Action.REJECT if cfg.incomplete_action == "reject" else Action.TEMPFAIL
            return Outcome(action, reply, found)
        encrypted = any(n == "ARCHIVE_ENCRYPTED" for n, _ in walk.findings)
        if encrypted and cfg.encrypted_action == "reject":
            return Outcome(Action.REJECT, ENCRYPTED, found)
        if encrypted and cfg.encrypted_action == "quarantine":
            return Outcome(Action.QUARANTINE, None, found)
        if not blocks:
            return Outcome(Action.CONTINUE, None, found)
        first = blocks[0]
        if cfg.action == "reject":
            # Reply text is 7-bit (RFC 5321 §4.2); a name in another script is shown escaped.
            shown = first.shown.encode("ascii", "backslashreplace").decode("ascii")
            text = f"{cfg.reject_response} ({first.rule}: {shown})"
            return Outcome(Action.REJECT, Reply(550, "5.7.1", text[:480]), found)
        if cfg.action == "silent_delete":
            return Outcome(Action.DISCARD, None, found)
        if any(b.entry.signed for b in blocks):
            if cfg.signed_action == "reject":
                return Outcome(Action.REJECT, SIGNED, found)
            return Outcome(Action.QUARANTINE, None, found)
        shown = ", ".join(f"{b.shown} ({b.rule})" for b in blocks[:10])
        return Outcome(Action.CONTINUE, None, found, ((REPORT_HEADER, f"blocked {len(blocks)}: {shown}"),))
