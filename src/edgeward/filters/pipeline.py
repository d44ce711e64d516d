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
import time
import types
from collections.abc import Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass, replace
from typing import Any

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
        guard = _StageDeadline()
        try:
            return await self._run(stage, ctx, guard)
        finally:
            guard.close()

    async def _run(self, stage: Stage, ctx: StageContext, guard: _StageDeadline) -> StageResult:
        findings: list[Finding] = []
        headers: list[tuple[str, str]] = []
        for agent in self._by_stage[stage]:
            if ctx.exempt and is_antispam(agent):
                continue
            # A later agent of the stage sees what the earlier ones found (the content filter
            # reads the DKIM and DMARC results of the sender-auth agent before it).
            seen = replace(ctx, earlier=(*ctx.earlier, *findings)) if findings else ctx
            outcome = await self._call(agent, stage, seen, guard)
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

    async def _call(self, agent: Agent, stage: Stage, ctx: StageContext, guard: _StageDeadline) -> Outcome:
        try:
            outcome = await guard.run(agent.check(stage, ctx), self.timeout)
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


class _StageDeadline:
    """One timer for all the agents of a stage, each still held to its own limit.

    ``asyncio.timeout`` around every agent call cost a timer, a reschedule and three lookups of
    the running loop per agent (each a ``getpid`` system call on Python 3.11). Here an agent's
    first step runs straight away: one that answers without waiting (most do) costs no timer at
    all. Only when an agent waits is the stage's single timer armed; later agents just move its
    deadline on, and the timer, when it fires early, re-arms itself for the current deadline.
    Expiry cancels the stage's task as ``asyncio.timeout`` does and turns that cancellation,
    and only that one, into ``TimeoutError``.
    """

    __slots__ = ("_active", "_cancelling", "_deadline", "_expired", "_handle", "_loop", "_task")

    def __init__(self) -> None:
        self._deadline = 0.0
        self._active = False
        self._expired = False
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancelling = 0

    async def run(self, coro: Coroutine[Any, Any, Any], limit: float) -> Any:
        deadline = time.monotonic() + limit
        try:
            first = coro.send(None)
        except StopIteration as stop:
            return stop.value
        if deadline <= time.monotonic():  # the first step alone took the whole limit
            coro.close()
            raise TimeoutError
        self._deadline, self._active = deadline, True
        if self._handle is None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task(self._loop)
            if self._task is None:
                coro.close()
                raise RuntimeError("agents run inside a task")
            self._cancelling = self._task.cancelling()
            self._arm()
        try:
            return await _resume(coro, first)
        except asyncio.CancelledError:
            if self._expired and self._task is not None and self._task.uncancel() <= self._cancelling:
                raise TimeoutError from None
            raise
        finally:
            self._active = False
            if self._expired:
                self._expired = False

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self) -> None:
        assert self._loop is not None
        self._handle = self._loop.call_later(max(0.0, self._deadline - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self._handle = None
        if not self._active:
            return  # between agents: the next one that waits arms the timer again
        if time.monotonic() < self._deadline:
            self._arm()
            return
        assert self._task is not None
        self._expired = True
        self._task.cancel()


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Go on with a coroutine whose first step has run, in the calling task (``yield from``
    for a coroutine that has already yielded once)."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value
