"""The agent pipeline: which agents run at a stage, in what order, and what their answer means.

Rules, in the spirit of Haraka and Exchange's transport pipeline:

- agents run one after another in configured order; the first final outcome wins and later
  agents at that stage are not asked;
- findings of every agent that ran are collected, so a rejection is explained, and each is
  given its stage and its weight from the score table (agents never weigh their own findings);
- anti-spam agents are skipped when the context is exempt (``filters.exemptions``);
- an agent that raises or runs past its time limit gives ``451 4.3.0`` (never ``250``) and is
  logged by name, unless it is fail-open, in which case the stage goes on without it;
- in observe-only mode every outcome is logged and none is enforced.

Security: the pipeline is the only place that turns agent answers into a verdict, so one
misbehaving agent cannot accept a message another agent rejected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from edgeward.filters.base import Agent, Stage, StageContext, is_antispam
from edgeward.filters.scoring import ScoreTable
from edgeward.types import Action, Finding, Outcome, Reply

log = logging.getLogger("edgeward.pipeline")

AGENT_FAILURE = Reply(451, "4.3.0", "Temporary local problem, please try again later")

# Called once per agent that ran: (agent name, stage, context, outcome).
AgentObserver = Callable[[str, Stage, StageContext, Outcome], None]


@dataclass(frozen=True, slots=True)
class StageResult:
    """The verdict of one stage and the findings that led to it."""

    outcome: Outcome
    decided_by: str = ""

    @property
    def action(self) -> Action:
        return self.outcome.action

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.outcome.findings


class Pipeline:
    """Runs the configured agents stage by stage."""

    def __init__(
        self,
        agents: Sequence[Agent],
        *,
        timeout: float = 30.0,
        observe_only: bool = False,
        observer: AgentObserver | None = None,
        scores: ScoreTable | None = None,
    ) -> None:
        self.agents = tuple(agents)
        self.scores = scores or ScoreTable()
        self.timeout = timeout
        self.observe_only = observe_only
        self._observer = observer
        self._by_stage = {stage: tuple(a for a in self.agents if stage in a.stages) for stage in Stage}

    def agents_for(self, stage: Stage) -> tuple[Agent, ...]:
        return self._by_stage[stage]

    async def run(self, stage: Stage, ctx: StageContext) -> StageResult:
        findings: list[Finding] = []
        headers: list[tuple[str, str]] = []
        for agent in self._by_stage[stage]:
            if ctx.exempt and is_antispam(agent):
                continue
            # A later agent of the stage sees what the earlier ones found (the content filter
            # reads the DKIM and DMARC results of the sender-auth agent before it).
            seen = replace(ctx, earlier=(*ctx.earlier, *findings)) if findings else ctx
            outcome = await self._call(agent, stage, seen)
            if outcome.findings:
                scored = tuple(self.scores.scored(f, stage.value) for f in outcome.findings)
                outcome = replace(outcome, findings=scored)
            findings.extend(outcome.findings)
            headers.extend(outcome.headers)
            if self._observer is not None:
                try:
                    self._observer(agent.name, stage, ctx, outcome)
                except Exception:  # a logging failure must not decide the fate of mail
                    log.exception("agent observer failed for %s", agent.name)
            if not outcome.action.is_final:
                continue
            if self.observe_only:
                log.info(
                    "observe-only: agent %s would %s at %s", agent.name, outcome.action.value, stage.value
                )
                continue
            final = replace(outcome, findings=tuple(findings), headers=tuple(headers))
            return StageResult(final, agent.name)
        return StageResult(Outcome(Action.CONTINUE, None, tuple(findings), tuple(headers)))

    async def _call(self, agent: Agent, stage: Stage, ctx: StageContext) -> Outcome:
        try:
            async with asyncio.timeout(self.timeout):
                outcome = await agent.check(stage, ctx)
            if not isinstance(outcome, Outcome):
                raise TypeError(f"returned {type(outcome).__name__}, not Outcome")
            return outcome
        except Exception as exc:
            # TimeoutError lands here too. Fail safe: a broken check must not let mail through.
            reason = "timed out" if isinstance(exc, TimeoutError) else f"failed: {exc!r}"
            log.error("agent %s %s at %s", agent.name, reason, stage.value)
            finding = Finding("AGENT_FAILURE", agent.name, reason)
            if agent.fail_open:
                return Outcome.proceed(finding)
            return Outcome.tempfail(AGENT_FAILURE, finding)
