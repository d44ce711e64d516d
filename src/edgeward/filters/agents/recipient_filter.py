"""Recipient filtering at RCPT (Exchange's Recipient Filter agent, issue 8 §2.3).

Two agents, in this order:

- ``recipient-filter`` refuses blocked recipients with ``550 5.1.1 User unknown`` (Exchange's
  BlockedRecipients answer: a harvester learns nothing from it). The list is
  ``[agents.recipient_filter] blocked_recipients`` and the live list ``recipient-block`` of the
  policy store (``edgeward antispam recipient block add|remove|list``). It is a hard control:
  an address the organisation blocked takes no mail from anyone.
- ``local-recipients`` validates recipients of the authoritative accepted domains against a
  ``RecipientSource`` (off by default, as Exchange's RecipientValidationEnabled). Today's source
  is the recipients file (``FileRecipients``); the directory replica plugs in behind the same
  interface. Unknown recipients get ``550 5.1.1``, which the policy tarpits
  (``filters.policy``) to slow directory harvesting. Recipients outside accepted domains are the
  relay agent's business and pass here.

A source or store that cannot answer gives ``451 4.3.0``: "unknown" is never "no such user".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from edgeward.errors import ConfigError
from edgeward.filters.agents.relay import domain_matches
from edgeward.filters.base import Stage, StageContext
from edgeward.ports import PolicyStore, PolicyStoreError
from edgeward.types import Address, Finding, Outcome, Reply

log = logging.getLogger("edgeward.filters.recipient_filter")

RECIPIENT_BLOCK_LIST = "recipient-block"
UNKNOWN_USER = Reply(550, "5.1.1", "User unknown")
SOURCE_UNAVAILABLE = Reply(451, "4.3.0", "Recipient lookup unavailable, try again later")


class RecipientSourceError(Exception):
    """The recipient source cannot answer now (a directory down, a replica not synchronised)."""


class RecipientSource(Protocol):
    """Who exists in the authoritative domains: the file today, the directory replica later."""

    async def exists(self, recipient: Address) -> bool:
        """Whether ``recipient`` is a known mailbox; raises RecipientSourceError if unknown."""


def read_recipients(path: Path) -> frozenset[str]:
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the recipient list ({exc.strerror})") from None
    entries = (line.split("#", 1)[0].strip().lower() for line in lines)
    return frozenset(e for e in entries if e)


class FileRecipients:
    """The recipients file: one address or ``@domain`` (whole domain) per line, read at load."""

    def __init__(self, entries: frozenset[str]) -> None:
        self.entries = entries

    @classmethod
    def read(cls, path: Path) -> FileRecipients:
        return cls(read_recipients(path))

    async def exists(self, recipient: Address) -> bool:
        # Local parts are compared case-insensitively: every mail system this gateway fronts
        # (Exchange, Postfix virtual maps, LDAP directories) treats them so.
        address = str(recipient).lower()
        return address in self.entries or f"@{recipient.domain.lower()}" in self.entries


class RecipientFilter:
    """Refuse recipients on the block list (configured and live)."""

    name = "recipient-filter"
    stages = frozenset({Stage.RCPT})
    antispam = False
    fail_open = False

    def __init__(self, blocked: Iterable[str], store: PolicyStore | None = None) -> None:
        self.blocked = frozenset(b.strip().lower() for b in blocked)
        self.store = store

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        rcpt = ctx.recipient
        if rcpt is None:
            return Outcome.proceed()
        address = str(rcpt).lower()
        listed = address in self.blocked
        if not listed and self.store is not None:
            try:
                listed = await self.store.list_get(RECIPIENT_BLOCK_LIST, address) is not None
            except PolicyStoreError as exc:
                log.warning("recipient-filter: %s", exc)
                return Outcome.tempfail(
                    SOURCE_UNAVAILABLE, Finding("POLICY_STORE_TEMPERROR", self.name, str(exc))
                )
        if listed:
            return Outcome.reject(UNKNOWN_USER, Finding("RCPT_BLOCKED", self.name, address))
        return Outcome.proceed()


class LocalRecipients:
    """Refuse recipients of the authoritative accepted domains that the recipient source lacks."""

    name = "local-recipients"
    stages = frozenset({Stage.RCPT})
    antispam = False
    fail_open = False

    def __init__(self, accepted_domains: Iterable[str], source: RecipientSource | frozenset[str]) -> None:
        self.accepted = frozenset(d.lower() for d in accepted_domains)
        self.source: RecipientSource = FileRecipients(source) if isinstance(source, frozenset) else source

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        rcpt = ctx.recipient
        if rcpt is None or not domain_matches(rcpt.domain, self.accepted):
            return Outcome.proceed()
        try:
            known = await self.source.exists(rcpt)
        except RecipientSourceError as exc:
            return Outcome.tempfail(SOURCE_UNAVAILABLE, Finding("RCPT_LOOKUP_TEMPERROR", self.name, str(exc)))
        if known:
            return Outcome.proceed()
        return Outcome.reject(UNKNOWN_USER, Finding("RCPT_UNKNOWN", self.name, str(rcpt).lower()))
