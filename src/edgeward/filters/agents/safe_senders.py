"""Per-recipient safe and blocked senders (issue 8 §2.10; Exchange's safelist aggregation).

Each recipient may trust senders (``safe-senders`` list) and block them (``recipient-blocked-
senders`` list), by address or by ``@domain`` (the domain itself, not its subdomains, as an
Outlook list means it). Both are lists of the policy store whose members are
``"recipient sender"`` pairs, changed live with ``edgeward antispam safelist|blocklist
add|remove|list RECIPIENT SENDER|@domain``.

- A safe sender exempts the message for that recipient from anti-spam:
  :class:`StoreSafeSenders` answers ``filters.exemptions``'s ``SafeSenders`` question, so the
  exemption is decided in one place, per recipient at RCPT and, for the message, only when
  every recipient is exempt.
- A blocked sender refuses that recipient alone with ``550 5.7.1`` (the ``safe-senders``
  agent at RCPT; Exchange's RecipientBlockedSenderAction ``Reject``); the other recipients of
  the same message are not affected. A sender that is both safe and blocked is safe: the
  recipient's exemption skips the agent, as Outlook lets the safe list win.

With ``[agents.local_recipients] source = "directory"`` the users' own lists of the directory
replica (``directory.recipients.DirectorySenderLists``) count beside the store's: a sender is
safe, or blocked, when either says so.

The null sender is never on a list: bounces must reach the recipient.
"""

from __future__ import annotations

import logging
from typing import Protocol

from edgeward.filters.base import Stage, StageContext
from edgeward.filters.storecalls import list_first
from edgeward.ports import PolicyStore, PolicyStoreError
from edgeward.types import Address, Finding, Outcome, Reply

log = logging.getLogger("edgeward.filters.safe_senders")

SAFE_LIST = "safe-senders"
BLOCKED_LIST = "recipient-blocked-senders"
BLOCKED_BY_RECIPIENT = Reply(550, "5.7.1", "Sender blocked by the recipient")
STORE_UNAVAILABLE = Reply(451, "4.3.0", "Recipient sender lists unavailable, try again later")


def pair(recipient: str, sender: str) -> str:
    """The list member for ``recipient`` and ``sender`` (``user@domain`` or ``@domain``).

    Raises ValueError for anything else, so a typo on the command line is refused.
    """
    rcpt = recipient.strip().lower()
    local, at, domain = rcpt.rpartition("@")
    if not at or not local or not domain or " " in rcpt:
        raise ValueError(f"{recipient!r}: the recipient must be user@domain")
    entry = sender.strip().lower().rstrip(".")
    local, at, domain = entry.rpartition("@")
    if not at or not domain or " " in entry or "@" in local:
        raise ValueError(f"{sender!r}: give user@domain or @domain")
    return f"{rcpt} {entry}"


def _members(recipient: Address, sender: Address) -> tuple[str, str]:
    rcpt = str(recipient).lower()
    return f"{rcpt} {str(sender).lower()}", f"{rcpt} @{sender.domain.lower().rstrip('.')}"


async def _listed(store: PolicyStore, name: str, recipient: Address, sender: Address) -> bool:
    return await list_first(store, name, _members(recipient, sender)) is not None


class SenderLists(Protocol):
    """Per-recipient lists kept elsewhere than the policy store (the directory replica)."""

    async def trusts(self, recipient: Address, sender: Address) -> bool: ...

    async def blocks(self, recipient: Address, sender: Address) -> bool: ...


class AnySafeSenders:
    """``SafeSenders`` that trusts a sender when any of its sources does."""

    def __init__(self, *sources: StoreSafeSenders | SenderLists) -> None:
        self.sources = sources

    async def trusts(self, recipient: Address, sender: Address) -> bool:
        for source in self.sources:
            if await source.trusts(recipient, sender):
                return True
        return False


class StoreSafeSenders:
    """``SafeSenders`` over the store's ``safe-senders`` list."""

    def __init__(self, store: PolicyStore) -> None:
        self.store = store

    async def trusts(self, recipient: Address, sender: Address) -> bool:
        if sender.is_null:
            return False
        try:
            return await _listed(self.store, SAFE_LIST, recipient, sender)
        except PolicyStoreError as exc:
            # Not knowing means filtering as usual: an outage must not open the filter.
            log.warning("safe senders unavailable, filtering as usual: %s", exc)
            return False


class RecipientBlockedSenders:
    """Refuse a recipient whose blocked-sender list holds the sender."""

    name = "safe-senders"
    stages = frozenset({Stage.RCPT})
    antispam = True
    fail_open = False

    def __init__(self, store: PolicyStore | None, lists: SenderLists | None = None) -> None:
        self.store = store
        self.lists = lists

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        sender, rcpt = ctx.mail_from, ctx.recipient
        if sender is None or sender.is_null or rcpt is None:
            return Outcome.proceed()
        try:
            blocked = self.lists is not None and await self.lists.blocks(rcpt, sender)
            if not blocked and self.store is not None:
                blocked = await _listed(self.store, BLOCKED_LIST, rcpt, sender)
        except PolicyStoreError as exc:
            log.warning("safe-senders: %s", exc)
            return Outcome.tempfail(STORE_UNAVAILABLE, Finding("POLICY_STORE_TEMPERROR", self.name, str(exc)))
        if blocked:
            return Outcome.reject(
                BLOCKED_BY_RECIPIENT, Finding("SENDER_BLOCKED_BY_RECIPIENT", self.name, str(rcpt))
            )
        return Outcome.proceed()
