"""Exemptions from anti-spam, decided in one place.

An agent declares whether it is anti-spam (``antispam = True``: exemptible) or a hard control
(relay, size, hop count, sender login ...: never exempt). The pipeline asks this module before
each stage and puts the answer in ``StageContext.exempt``; an exempt context skips every
anti-spam agent, so no agent decides bypass on its own.

What exempts, and at which granularity:

- per session (CONNECT onwards): a client address in the IP allow list (``[policy] ip_allow``,
  and the live list of the policy store, ``edgeward antispam ip allow``, behind ``allow_list``),
  or a session holding the
  ``bypass_antispam`` right (authenticated users, domain-secure partners, trusted servers);
- per transaction (MAIL onwards): a bypassed sender or sender domain;
- per recipient (RCPT): a bypassed recipient, or a sender on the recipient's safe-sender list
  (``SafeSenders``: the store's lists, ``filters.agents.safe_senders``). A recipient-specific
  decision is made here because RCPT answers one recipient at a time;
- per message (DATA, EOD): one reply covers every recipient, so the message is exempt only when
  the session or sender is, or every recipient is. A message for one exempt and one ordinary
  recipient is judged as the ordinary one would be: an exempt recipient never carries spam past
  the filter for others. (Exchange's content filter does the same with bypassed recipients.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from edgeward.config.schema import Config
from edgeward.filters.agents.relay import domain_matches
from edgeward.types import Address, Peer

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SafeSenders(Protocol):
    """Per-recipient safe senders: whether ``recipient`` trusts ``sender`` (address or domain)."""

    async def trusts(self, recipient: Address, sender: Address) -> bool: ...


class NoSafeSenders:
    """No recipient has a safe-sender list (a gateway without a policy store)."""

    async def trusts(self, recipient: Address, sender: Address) -> bool:
        return False


class Exemptions:
    """Answers "is this exempt from anti-spam, and why" for a session, sender or recipient."""

    def __init__(
        self,
        *,
        allow: Iterable[str] = (),
        senders: Iterable[str] = (),
        sender_domains: Iterable[str] = (),
        recipients: Iterable[str] = (),
        safe_senders: SafeSenders | None = None,
        allow_list: Callable[[str], bool] | None = None,
    ) -> None:
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in allow)
        self.senders = frozenset(s.lower() for s in senders)
        self.sender_domains = frozenset(d.lower().rstrip(".") for d in sender_domains)
        self.recipients = frozenset(r.lower() for r in recipients)
        self.safe_senders: SafeSenders = safe_senders or NoSafeSenders()
        # The live allow list of the policy store (``filters.agents.connection.IpLists``): a
        # synchronous snapshot, because every stage asks before its agents run.
        self.allow_list = allow_list

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        safe_senders: SafeSenders | None = None,
        allow_list: Callable[[str], bool] | None = None,
    ) -> Exemptions:
        policy, cf = config.policy, config.agents.content_filter
        return cls(
            allow=policy.ip_allow,
            senders=(*policy.bypassed_senders, *cf.bypassed_senders),
            sender_domains=(*policy.bypassed_sender_domains, *cf.bypassed_sender_domains),
            recipients=(*policy.bypassed_recipients, *cf.bypassed_recipients),
            safe_senders=safe_senders,
            allow_list=allow_list,
        )

    def session(self, peer: Peer, bypass_antispam: bool) -> str:
        if bypass_antispam:
            return "session has bypass_antispam"
        try:
            address = peer.address
        except ValueError:
            return ""
        if any(address in net for net in self.networks):
            return "client on the IP allow list"
        if self.allow_list is not None and self.allow_list(str(address)):
            return "client on the IP allow list"
        return ""

    def sender(self, sender: Address | None) -> str:
        if sender is None or sender.is_null:
            return ""
        if str(sender).lower() in self.senders:
            return "bypassed sender"
        if domain_matches(sender.domain, self.sender_domains):
            return "bypassed sender domain"
        return ""

    async def recipient(self, sender: Address | None, recipient: Address) -> str:
        if str(recipient).lower() in self.recipients:
            return "bypassed recipient"
        if sender is not None and not sender.is_null and await self.safe_senders.trusts(recipient, sender):
            return "safe sender of the recipient"
        return ""

    async def message(
        self,
        session: str,
        sender: Address | None,
        recipients: Sequence[Address],
        *,
        recipient: Callable[[Address], Awaitable[str]] | None = None,
    ) -> str:
        """The per-message answer (DATA, EOD): session or sender, else every recipient.

        ``recipient`` answers for one recipient in place of :meth:`recipient` (the policy gives
        the answers it noted at RCPT).
        """
        if session:
            return session
        if reason := self.sender(sender):
            return reason
        if not recipients:
            return ""
        for rcpt in recipients:
            reason = await recipient(rcpt) if recipient is not None else await self.recipient(sender, rcpt)
            if not reason:
                return ""
        return "every recipient exempt"
