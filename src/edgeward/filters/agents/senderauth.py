"""The sender-auth agent at end of data: DKIM and ARC verification, DMARC, Authentication-Results.

One agent for the three, because DMARC needs the DKIM results of the same message and the ARC
verdict decides whether a DMARC failure stands; the SPF result comes from the ``spf`` agent's
finding at MAIL (``StageContext.earlier``, :func:`edgeward.filters.agents.spf.spf_from_findings`).

Findings: ``DKIM_*`` (one per distinct signature status, plus ``DKIM_LENGTH_LIMITED`` for a
passing ``l=`` signature), ``ARC_*``, and for DMARC ``DMARC_PASS``/``NONE``/``TEMPERROR``/
``PERMERROR`` or, on failure, by the policy left after ``pct`` sampling: ``DMARC_FAIL``
(p=none), ``DMARC_FAIL_QUARANTINE``, ``DMARC_FAIL_REJECT``; a message without one readable
author adds ``DMARC_FROM_INVALID`` and counts as p=reject (``senderauth.dmarc``).

What a failure does (``[dmarc]``). Defaults honour the domain owner's request, as Exchange
Online (since 2023), Gmail and OpenDMARC with ``RejectFailures`` do: p=reject gets
``550 5.7.1`` (RFC 7489 §6.7) and p=quarantine is quarantined. Either can be set to ``score``,
leaving the decision to the ``[policy]`` thresholds (DMARC_FAIL_REJECT weighs 7, the default
reject threshold). A temperror only stamps unless ``temperror_action = "tempfail"``
(``451 4.4.3``).

Forwarded mail: when DMARC fails and the ARC chain passed with a newest sealer listed in
``[arc] trusted_sealers`` (a mailing list or forwarder the site trusts to have checked the
original), the failure is overridden: ``ARC_OVERRIDE`` instead of ``DMARC_FAIL_*``, and no
direct action, as RFC 8617 §7.2 describes a receiver's local policy.

Authenticated and relaying clients are not checked, as at MAIL (``spf.not_checked``): their
own domain's p=reject would otherwise refuse the organisation's outbound mail.

The ``Authentication-Results`` field (RFC 8601) with our authserv-id is returned as a header,
so it is stamped only on accepted mail; fields a client sent under our name were already
removed before any agent looked (``filters.transforms.authresults``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable

from edgeward.filters.agents.spf import not_checked, spf_from_findings
from edgeward.filters.base import Stage, StageContext
from edgeward.ports import DnsLookup
from edgeward.senderauth import authresults
from edgeward.senderauth.arc import MAX_ARC_FIELDS, ArcResult, verify_arc, verify_arc_file
from edgeward.senderauth.bodyhash import BodyDigests
from edgeward.senderauth.dkim import MAX_SIGNATURES, DkimResult, verify_dkim, verify_dkim_file
from edgeward.senderauth.dmarc import DmarcChecker, DmarcResult, DmarcStatus, Policy
from edgeward.types import Action, Finding, Outcome, Reply

__all__ = ["DMARC_TEMPERROR", "SenderAuth", "auth_results"]

AGENT = "sender-auth"
DMARC_TEMPERROR = Reply(451, "4.4.3", "DMARC check failed temporarily, try again later")
_FAIL_NAMES = {
    Policy.NONE: "DMARC_FAIL",
    Policy.QUARANTINE: "DMARC_FAIL_QUARANTINE",
    Policy.REJECT: "DMARC_FAIL_REJECT",
}
_ACTIONS = {"reject": Action.REJECT, "quarantine": Action.QUARANTINE}


def auth_results(findings: Iterable[Finding]) -> dict[str, str]:
    """The SPF, DKIM and DMARC results this gateway found, by method (``{"spf": "pass", ...}``),
    for the content classifier; a method that was not checked is absent."""
    found = list(findings)
    out: dict[str, str] = {}
    spf = spf_from_findings(found)
    if spf is not None:
        out["spf"] = spf.result
    ours = [f.name for f in found if f.agent == AGENT]
    dkim = [n.removeprefix("DKIM_").lower() for n in ours if n.startswith("DKIM_")]
    for result in ("pass", "fail", "permerror", "temperror", "none"):
        if result in dkim:
            out["dkim"] = result
            break
    dmarc = [n for n in ours if n.startswith("DMARC_") and n != "DMARC_FROM_INVALID"]
    if dmarc:
        out["dmarc"] = (
            "fail" if dmarc[0].startswith("DMARC_FAIL") else dmarc[0].removeprefix("DMARC_").lower()
        )
    return out


def _dmarc_rejection(domain: str) -> Reply:
    # The domain is the parsed author domain (a checked host name), safe in a reply.
    where = f" of {domain}" if domain else ""
    return Reply(550, "5.7.1", f"Message rejected by the DMARC policy{where}")


class SenderAuth:
    """DKIM and ARC verification and DMARC at end of data; writes Authentication-Results."""

    name = AGENT
    stages = frozenset({Stage.EOD})
    antispam = True
    fail_open = False

    def __init__(
        self,
        dns: DnsLookup,
        authserv_id: str,
        *,
        checker: DmarcChecker | None = None,
        reject_action: str = "reject",
        quarantine_action: str = "quarantine",
        temperror_action: str = "stamp",
        trusted_sealers: Collection[str] = (),
    ) -> None:
        self.dns = dns
        self.authserv_id = authserv_id
        self.checker = checker or DmarcChecker(dns)
        self.actions = {Policy.REJECT: reject_action, Policy.QUARANTINE: quarantine_action}
        self.temperror_action = temperror_action
        self.trusted_sealers = tuple(trusted_sealers)

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        if not_checked(ctx):
            return Outcome.proceed()
        # The two fetch their keys independently: one wait for DNS instead of two.
        if ctx.spooled is not None:
            # A message over the inline budget: read from its file in pieces, never held whole,
            # and in one pass for the body hashes of both checks.
            body = BodyDigests.of_message(ctx.spooled)
            body.plan_header(ctx.spooled.header, MAX_SIGNATURES, MAX_ARC_FIELDS)
            dkim, arc = await asyncio.gather(
                verify_dkim_file(ctx.spooled, self.dns, digests=body),
                verify_arc_file(ctx.spooled, self.dns, digests=body),
            )
        else:
            dkim, arc = await asyncio.gather(verify_dkim(ctx.data, self.dns), verify_arc(ctx.data, self.dns))
        spf = spf_from_findings(ctx.earlier)
        from_fields = ctx.headers.get_all("From") if ctx.headers is not None else []
        dmarc = await self.checker.check(
            from_fields, dkim, spf.result if spf else "none", spf.domain if spf else ""
        )
        findings = [*self._dkim_findings(dkim), *self._arc_findings(arc)]
        dmarc_findings, override = self._dmarc_findings(dmarc, arc)
        findings += dmarc_findings
        report = authresults.SpfReport(
            spf.result if spf else "none",
            mailfrom=spf.domain if spf and spf.identity == "mailfrom" else "",
            helo=spf.domain if spf and spf.identity == "helo" else "",
        )
        field = authresults.build(self.authserv_id, spf=report, dkim=dkim, dmarc=dmarc, arc=arc)
        name, _, value = field.removesuffix("\r\n").partition(": ")
        headers = ((name, value),)
        action = self._action(dmarc, override)
        if action is Action.REJECT:
            return Outcome(action, _dmarc_rejection(dmarc.from_domain), tuple(findings), headers)
        if action is Action.TEMPFAIL:
            return Outcome(action, DMARC_TEMPERROR, tuple(findings), headers)
        return Outcome(action, None, tuple(findings), headers)

    def _dkim_findings(self, dkim: DkimResult) -> list[Finding]:
        detail = {
            f"DKIM_{s.status.name}": f"d={s.domain} s={s.selector} {s.reason}".strip()
            for s in reversed(dkim.signatures)
        }
        return [Finding(n, self.name, detail.get(n, "")[:300]) for n in dkim.findings()]

    def _arc_findings(self, arc: ArcResult) -> list[Finding]:
        sealer = f"i={arc.sets[0].instance} d={arc.sets[0].sealer} " if arc.sets else ""
        return [Finding(n, self.name, f"{sealer}{arc.reason}".strip()[:300]) for n in arc.findings()]

    def _dmarc_findings(self, dmarc: DmarcResult, arc: ArcResult) -> tuple[list[Finding], bool]:
        detail = f"header.from={dmarc.from_domain or '?'} {dmarc.reason}".strip()[:300]
        extra = [Finding(n, self.name, detail) for n in dmarc.findings_extra]
        if dmarc.status is not DmarcStatus.FAIL:
            return [Finding(f"DMARC_{dmarc.status.name}", self.name, detail), *extra], False
        sealer = arc.trusted_sealer(self.trusted_sealers)
        if sealer is not None and dmarc.applied is not Policy.NONE:
            why = f"{detail}; ARC chain i={sealer.instance} sealed by trusted {sealer.sealer}"
            failed = Finding("DMARC_FAIL", self.name, detail)
            return [failed, Finding("ARC_OVERRIDE", self.name, why[:300]), *extra], True
        return [Finding(_FAIL_NAMES[dmarc.applied], self.name, detail), *extra], False

    def _action(self, dmarc: DmarcResult, override: bool) -> Action:
        if dmarc.status is DmarcStatus.TEMPERROR:
            return Action.TEMPFAIL if self.temperror_action == "tempfail" else Action.CONTINUE
        if dmarc.status is not DmarcStatus.FAIL or override:
            return Action.CONTINUE
        return _ACTIONS.get(self.actions.get(dmarc.applied, "score"), Action.CONTINUE)
