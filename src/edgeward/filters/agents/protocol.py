"""Protocol analysis (issue 8 §2.7): how the client talks, as findings.

The session counts what it notices (``filters.signals``): talking before the banner during the
connector's ``greet_pause`` (pregreet, postscreen's test), pipelining it was never offered,
bare LF line endings (already refused by the core; here they are also counted), commands the
core refused, and junk commands. This agent turns the counts into findings: pregreet at CONNECT,
so it weighs on every message of the session, and the others at end of data, where they weigh
on the message and feed sender reputation (``filters.agents.reputation`` learns from the
verdict's findings). It makes no decision of its own; the tarpit grows with the same counts
(``filters.policy.Policy.tarpit``).
"""

from __future__ import annotations

from edgeward.config.schema import ProtocolAnalysisConfig
from edgeward.filters.base import Stage, StageContext
from edgeward.types import Finding, Outcome


class ProtocolAnalysis:
    """Report pregreet, unauthorised pipelining, bare LF, errors and junk commands."""

    name = "protocol-analysis"
    stages = frozenset({Stage.CONNECT, Stage.EOD})
    antispam = True
    fail_open = True

    def __init__(self, config: ProtocolAnalysisConfig | None = None) -> None:
        self.config = config or ProtocolAnalysisConfig()

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        seen = ctx.session.protocol
        if stage is Stage.CONNECT:
            if seen.pregreet:
                return Outcome.proceed(
                    Finding("PROTOCOL_PREGREET", self.name, "client spoke before the banner")
                )
            return Outcome.proceed()
        findings: list[Finding] = []
        if seen.pipelining:
            findings.append(
                Finding("PROTOCOL_PIPELINING", self.name, f"{seen.pipelining} command(s) unasked")
            )
        if seen.bare_lf:
            findings.append(Finding("PROTOCOL_BARE_LF", self.name, f"{seen.bare_lf} time(s)"))
        if seen.errors >= self.config.errors:
            findings.append(Finding("PROTOCOL_ERRORS", self.name, f"{seen.errors} refused command(s)"))
        if seen.junk >= self.config.junk_commands:
            findings.append(Finding("PROTOCOL_JUNK", self.name, f"{seen.junk} junk command(s)"))
        return Outcome.proceed(*findings)
