"""The SPF agent at MAIL (RFC 7208): the result as a finding, and ``Received-SPF`` on acceptance.

MAIL FROM is checked; for the null sender ``check_spf`` checks the HELO identity instead
(RFC 7208 §2.4). The result is one finding, ``SPF_PASS`` ... ``SPF_PERMERROR``, weighed by the
score table, and a ``Received-SPF`` field (§9.1) the stamps transform adds if the message is
accepted. Two results can decide on the spot, when configured to (``[spf]``):

- ``fail_action = "reject"``: ``550 5.7.23`` (RFC 7372 §3.2). The default is ``"score"``:
  forwarded mail fails SPF routinely, so a fail alone should weigh, not refuse, as Exchange's
  Sender ID agent and Proxmox's defaults treat it;
- ``temperror_action = "tempfail"``: ``451 4.4.3`` (RFC 7208 §8.6 asks for a 4xx; 4.4.3 is
  "directory server failure"). The default ``"stamp"`` keeps a DNS outage from delaying mail.

Authenticated sessions and clients with the ``relay`` right are not checked (:func:`not_checked`):
they send the organisation's own mail outwards, from addresses no SPF record names.

The finding's ``detail`` starts with ``<identity>=<domain>`` (its name gives the result), which
:func:`spf_from_findings` reads back at end of data, so DMARC uses the very result the client
was judged on at MAIL through the policy layer's ledger, not state kept by this agent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edgeward.filters.base import Stage, StageContext
from edgeward.ports import DnsLookup
from edgeward.senderauth.received_spf import FIELD_NAME, received_spf_value
from edgeward.senderauth.spf import DEFAULT_TIME_LIMIT, SpfIdentity, SpfStatus, check_spf
from edgeward.types import Action, Finding, Outcome, Reply

__all__ = ["SpfAgent", "SpfSeen", "spf_from_findings"]

AGENT = "spf"
SPF_FAILED = Reply(550, "5.7.23", "SPF validation failed")
SPF_TEMPERROR = Reply(451, "4.4.3", "SPF check failed temporarily, try again later")


@dataclass(frozen=True, slots=True)
class SpfSeen:
    """The SPF result of the transaction, as DMARC needs it: the result word and its domain."""

    result: str
    identity: str
    domain: str


def spf_from_findings(findings: Iterable[Finding]) -> SpfSeen | None:
    """The SPF result this agent reported earlier in the transaction, or None if it did not run."""
    for finding in findings:
        if finding.agent != AGENT or not finding.name.startswith("SPF_"):
            continue
        identity, eq, domain = finding.detail.split(" ", 1)[0].partition("=")
        if eq:
            return SpfSeen(finding.name.removeprefix("SPF_").lower(), identity, domain)
    return None


def not_checked(ctx: StageContext) -> bool:
    """Authenticated and relaying clients send the organisation's own mail outwards: the address
    they connect from is not the domain's published sender, so SPF and DMARC do not apply."""
    return bool(ctx.session.authenticated) or ctx.session.may_relay


class SpfAgent:
    """SPF (RFC 7208) for MAIL FROM, or HELO for the null sender; stamps Received-SPF."""

    name = AGENT
    stages = frozenset({Stage.MAIL})
    antispam = True
    fail_open = False

    def __init__(
        self,
        dns: DnsLookup,
        receiver: str,
        *,
        fail_action: str = "score",
        temperror_action: str = "stamp",
        time_limit: float = DEFAULT_TIME_LIMIT,
    ) -> None:
        self.dns = dns
        self.receiver = receiver
        self.fail_action = fail_action
        self.temperror_action = temperror_action
        self.time_limit = time_limit

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        sender = ctx.mail_from
        if sender is None or not_checked(ctx):
            return Outcome.proceed()
        result = await check_spf(
            self.dns, ctx.session.peer.ip, "" if sender.is_null else str(sender), ctx.session.helo,
            receiver=self.receiver, time_limit=self.time_limit,
        )  # fmt: skip
        domain = result.domain or (ctx.session.helo if result.identity is SpfIdentity.HELO else sender.domain)
        # The HELO name is the client's free text: no white space may end the first word early.
        token = "".join(domain.split()) or "-"
        detail = f"{result.identity.value}={token} {result.status.value}: {result.description()}"
        finding = Finding(result.finding_name(), self.name, detail[:300])
        header = (FIELD_NAME, received_spf_value(result, receiver=self.receiver))
        if result.status is SpfStatus.FAIL and self.fail_action == "reject":
            return Outcome.reject(SPF_FAILED, finding)
        if result.status is SpfStatus.TEMPERROR and self.temperror_action == "tempfail":
            return Outcome.tempfail(SPF_TEMPERROR, finding)
        return Outcome(Action.CONTINUE, None, (finding,), (header,))
