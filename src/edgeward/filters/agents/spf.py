"""The SPF agent at HELO and MAIL (RFC 7208): results as findings, ``Received-SPF`` on acceptance.

At HELO/EHLO the HELO identity is checked on its own (§2.3: verifiers SHOULD), when it is a
domain name and not an address literal: one ``SPF_HELO_*`` finding, which belongs to the session
(a new EHLO replaces it), and a ``Received-SPF`` field with ``identity=helo``. These weigh less
than the MAIL FROM results (``config/scores.py``): a HELO name is a host name, which few owners
publish SPF for and which DMARC never aligns with, so its fail says less about the mail.

At MAIL the MAIL FROM identity is checked; for the null sender it is ``postmaster@<HELO>``
(§2.4), so ``check_spf`` checks the HELO domain again and reports it as the MAIL FROM result: a
bounce whose HELO fails then counts both findings, because a forged HELO on a null-sender
message (backscatter) is what the HELO check is most useful against. Its ``Received-SPF`` is not
written twice. The MAIL result is one finding, ``SPF_PASS`` ... ``SPF_PERMERROR``, weighed by the
score table, and a ``Received-SPF`` field (§9.1) the stamps transform adds if the message is
accepted. Two MAIL results can decide on the spot, when configured to (``[spf]``); a HELO
result never decides, it only weighs:

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

import re
from collections.abc import Iterable
from dataclasses import dataclass

from edgeward.filters.base import Stage, StageContext
from edgeward.ports import DnsLookup
from edgeward.senderauth.received_spf import FIELD_NAME, received_spf_value
from edgeward.senderauth.spf import (
    DEFAULT_TIME_LIMIT,
    SpfIdentity,
    SpfResult,
    SpfStatus,
    check_helo,
    check_spf,
)
from edgeward.types import Action, Finding, Outcome, Reply

__all__ = ["SpfAgent", "SpfSeen", "helo_finding_name", "helo_is_checked", "spf_from_findings"]

AGENT = "spf"
HELO = "SPF_HELO_"  # the prefix of the HELO identity's findings
# A HELO name worth an SPF check: a domain of at least two labels (RFC 7208 §2.3), not a literal.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,253}}\Z)(?:{_LABEL}\.)+{_LABEL}\Z")
SPF_FAILED = Reply(550, "5.7.23", "SPF validation failed")
SPF_TEMPERROR = Reply(451, "4.4.3", "SPF check failed temporarily, try again later")


@dataclass(frozen=True, slots=True)
class SpfSeen:
    """The SPF result of the transaction, as DMARC needs it: the result word and its domain."""

    result: str
    identity: str
    domain: str


def spf_from_findings(findings: Iterable[Finding]) -> SpfSeen | None:
    """The MAIL FROM result this agent reported earlier in the transaction, or None if it did not run."""
    for finding in findings:
        if finding.agent != AGENT or not finding.name.startswith("SPF_") or finding.name.startswith(HELO):
            continue
        identity, eq, domain = finding.detail.split(" ", 1)[0].partition("=")
        if eq:
            return SpfSeen(finding.name.removeprefix("SPF_").lower(), identity, domain)
    return None


def not_checked(ctx: StageContext) -> bool:
    """Authenticated and relaying clients send the organisation's own mail outwards: the address
    they connect from is not the domain's published sender, so SPF and DMARC do not apply."""
    return bool(ctx.session.authenticated) or ctx.session.may_relay


def helo_is_checked(helo: str) -> bool:
    """Whether a HELO name gets its own SPF check: a domain name, not an address literal."""
    return bool(_DOMAIN.match(helo)) and not helo.replace(".", "").isdigit()


def helo_finding_name(result: SpfResult) -> str:
    """The finding of a check of the HELO identity at HELO: ``SPF_HELO_PASS`` ..."""
    return HELO + result.status.value.upper()


class SpfAgent:
    """SPF (RFC 7208) for the HELO identity and for MAIL FROM (HELO for the null sender)."""

    name = AGENT
    stages = frozenset({Stage.HELO, Stage.MAIL})
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
        helo_check: bool = True,
    ) -> None:
        self.dns = dns
        self.receiver = receiver
        self.fail_action = fail_action
        self.temperror_action = temperror_action
        self.time_limit = time_limit
        self.helo_check = helo_check

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        if stage is Stage.HELO:
            return await self._helo(ctx)
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
        if result.status is SpfStatus.FAIL and self.fail_action == "reject":
            return Outcome.reject(SPF_FAILED, finding)
        if result.status is SpfStatus.TEMPERROR and self.temperror_action == "tempfail":
            return Outcome.tempfail(SPF_TEMPERROR, finding)
        if result.identity is SpfIdentity.HELO and any(f.name.startswith(HELO) for f in ctx.earlier):
            return Outcome(Action.CONTINUE, None, (finding,))  # its Received-SPF came at HELO
        return Outcome(Action.CONTINUE, None, (finding,), (self._received(result),))

    async def _helo(self, ctx: StageContext) -> Outcome:
        helo = ctx.session.helo
        if not self.helo_check or not helo_is_checked(helo) or ctx.session.may_relay:
            return Outcome.proceed()
        result = await check_helo(
            self.dns, ctx.session.peer.ip, helo, receiver=self.receiver, time_limit=self.time_limit
        )
        detail = f"helo={helo} {result.status.value}: {result.description()}"
        finding = Finding(helo_finding_name(result), self.name, detail[:300])
        return Outcome(Action.CONTINUE, None, (finding,), (self._received(result),))

    def _received(self, result: SpfResult) -> tuple[str, str]:
        return (FIELD_NAME, received_spf_value(result, receiver=self.receiver))
