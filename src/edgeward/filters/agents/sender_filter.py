"""Sender filtering at MAIL (Exchange's Sender Filter agent, issue 8 §2.2).

Blocks senders by exact address, by exact domain (``@example.org`` does not cover
``sales.example.org``, as Exchange's BlockedDomains), by domain and subdomains
(``*.example.org``), and optionally the blank sender ``<>`` (off by default: bounces travel with
it, and refusing them breaks delivery reports; Exchange's BlankSenderBlockingEnabled is off too).
The lists are the configuration's ``[agents.sender_filter]`` and the live list ``sender-block``
of the policy store, changed with ``edgeward antispam sender block add|remove|list`` without a
restart.

``action = "reject"`` (the default, as Exchange) answers ``554 5.1.0 Sender denied`` and, with
``disconnect`` (on by default, as Exchange's Sender Filter does), closes the connection after it:
a client that sends from a blocked sender is rarely worth another try on the same connection,
and a spam run that walks through forged senders would otherwise get one probe per MAIL
(RFC 5321 §7.8 leaves a server free to close on clients it takes for abuse). The session
tracks the refusal with the close. ``"stamp"`` accepts and reports the finding, which
the score table weighs at end of data. It
is an anti-spam agent: an exempt session (allow list, ``bypass_antispam``) is not filtered, as
Exchange filters only external mail by default. A store that cannot answer gives
``451 4.3.0``: "unknown" must not pass as "not blocked".
"""

from __future__ import annotations

import logging

from edgeward.config.schema import SenderFilterConfig
from edgeward.errors import ConfigError
from edgeward.filters.base import Stage, StageContext
from edgeward.filters.storecalls import list_first
from edgeward.ports import PolicyStore, PolicyStoreError
from edgeward.types import Action, Address, Finding, Outcome, Reply

log = logging.getLogger("edgeward.filters.sender_filter")

SENDER_BLOCK_LIST = "sender-block"
SENDER_DENIED = Reply(554, "5.1.0", "Sender denied")
STORE_UNAVAILABLE = Reply(451, "4.3.0", "Sender lists unavailable, try again later")


def sender_entry(text: str) -> str:
    """The canonical list member for ``user@domain``, ``@domain`` or ``*.domain``.

    Raises ValueError for anything else, so the command line refuses a typo instead of storing
    an entry that can never match.
    """
    entry = text.strip().lower().rstrip(".")
    if entry.startswith("*."):
        domain = entry[2:]
    elif entry.startswith("@"):
        domain = entry[1:]
    else:
        local, at, domain = entry.rpartition("@")
        if not at or not local or "@" in local or " " in local:
            raise ValueError(f"{text!r}: give user@domain, @domain or *.domain")
    if not domain or "@" in domain or " " in domain or domain.startswith(".") or "*" in domain:
        raise ValueError(f"{text!r}: not a valid domain")
    return entry


def candidates(sender: Address) -> list[str]:
    """Every list member that would block ``sender``: the address, its domain, its parents."""
    domain = sender.domain.lower().rstrip(".")
    found = [str(sender).lower(), f"@{domain}"]
    labels = domain.split(".")
    found.extend("*." + ".".join(labels[i:]) for i in range(len(labels)))
    return found


class SenderFilter:
    """Refuse (or stamp) blocked senders, domains, subdomains and, optionally, the blank sender."""

    name = "sender-filter"
    stages = frozenset({Stage.MAIL})
    antispam = True
    fail_open = False

    def __init__(self, config: SenderFilterConfig, store: PolicyStore | None = None) -> None:
        self.action = config.action
        self.disconnect = config.disconnect
        self.blank = config.block_blank_sender
        try:
            members = [
                *(sender_entry(s) for s in config.blocked_senders),
                *(sender_entry("@" + d.removeprefix("@")) for d in config.blocked_domains),
                *(sender_entry("*." + d.removeprefix("*.")) for d in config.blocked_domains_and_subdomains),
            ]
        except ValueError as exc:
            raise ConfigError(f"agents.sender_filter: {exc}") from None
        self.static = frozenset(members)
        self.store = store

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        sender = ctx.mail_from
        if sender is None:
            return Outcome.proceed()
        if sender.is_null or not sender.domain:
            if self.blank:
                return self._blocked(Finding("SENDER_BLANK", self.name, "blank sender"))
            return Outcome.proceed()
        wanted = candidates(sender)
        hit = next((m for m in wanted if m in self.static), None)
        if hit is None and self.store is not None:
            try:
                hit = await list_first(self.store, SENDER_BLOCK_LIST, wanted)
            except PolicyStoreError as exc:
                log.warning("sender-filter: %s", exc)
                return Outcome.tempfail(
                    STORE_UNAVAILABLE, Finding("POLICY_STORE_TEMPERROR", self.name, str(exc))
                )
        if hit is None:
            return Outcome.proceed()
        return self._blocked(Finding("SENDER_BLOCKED", self.name, f"{sender} matches {hit}"))

    def _blocked(self, finding: Finding) -> Outcome:
        if self.action == "stamp":
            return Outcome.proceed(finding)
        if self.disconnect:
            return Outcome(Action.DISCONNECT, SENDER_DENIED, (finding,))
        return Outcome.reject(SENDER_DENIED, finding)
