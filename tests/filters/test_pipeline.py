from __future__ import annotations

import asyncio

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.pipeline import AGENT_FAILURE, Pipeline
from edgeward.types import Action, Finding, Outcome, Peer, Reply

REJECT = Reply(550, "5.7.1", "no")


def ctx(stage: Stage = Stage.RCPT) -> StageContext:
    info = SessionInfo("s1", Peer("192.0.2.1", 1234), ReceiveConnectorConfig(name="internet"))
    return StageContext(stage, info)


class Fixed:
    fail_open = False

    def __init__(
        self, name: str, outcome: Outcome, stages: frozenset[Stage] = frozenset({Stage.RCPT})
    ) -> None:
        self.name = name
        self.stages = stages
        self.outcome = outcome
        self.calls = 0

    async def check(self, stage: Stage, c: StageContext) -> Outcome:
        self.calls += 1
        return self.outcome


class Raises(Fixed):
    async def check(self, stage: Stage, c: StageContext) -> Outcome:
        raise RuntimeError("dependency down")


class Slow(Fixed):
    async def check(self, stage: Stage, c: StageContext) -> Outcome:
        await asyncio.sleep(60)
        return self.outcome


async def test_first_final_outcome_wins_and_findings_accumulate() -> None:
    a = Fixed("a", Outcome.proceed(Finding("A_SEEN", "a")))
    b = Fixed("b", Outcome.reject(REJECT, Finding("B_BAD", "b")))
    c = Fixed("c", Outcome.proceed())
    result = await Pipeline([a, b, c]).run(Stage.RCPT, ctx())
    assert result.action is Action.REJECT and result.outcome.reply == REJECT
    assert [f.name for f in result.outcome.findings] == ["A_SEEN", "B_BAD"]
    assert result.decided_by == "b"
    assert c.calls == 0


async def test_agents_run_only_at_their_stages() -> None:
    a = Fixed("a", Outcome.reject(REJECT), frozenset({Stage.EOD}))
    result = await Pipeline([a]).run(Stage.RCPT, ctx())
    assert result.action is Action.CONTINUE and a.calls == 0


async def test_an_agent_that_raises_gives_451_never_250() -> None:
    result = await Pipeline([Raises("broken", Outcome.proceed())]).run(Stage.RCPT, ctx())
    assert result.action is Action.TEMPFAIL and result.outcome.reply == AGENT_FAILURE
    assert result.outcome.findings[0].name == "AGENT_FAILURE" and result.outcome.findings[0].agent == "broken"


async def test_an_agent_that_times_out_gives_451() -> None:
    result = await Pipeline([Slow("slow", Outcome.proceed())], timeout=0.05).run(Stage.RCPT, ctx())
    assert result.action is Action.TEMPFAIL and result.outcome.reply is not None
    assert result.outcome.reply.code == 451 and result.outcome.reply.enhanced == "4.3.0"


async def test_fail_open_agent_failure_lets_the_stage_continue() -> None:
    agent = Raises("optional", Outcome.proceed())
    agent.fail_open = True
    result = await Pipeline([agent]).run(Stage.RCPT, ctx())
    assert result.action is Action.CONTINUE
    assert result.outcome.findings[0].name == "AGENT_FAILURE"


async def test_observe_only_logs_but_does_not_enforce() -> None:
    seen: list[tuple[str, Action]] = []
    pipeline = Pipeline(
        [Fixed("strict", Outcome.reject(REJECT))],
        observe_only=True,
        observer=lambda name, stage, c, outcome: seen.append((name, outcome.action)),
    )
    result = await pipeline.run(Stage.RCPT, ctx())
    assert result.action is Action.CONTINUE
    assert seen == [("strict", Action.REJECT)]


async def test_a_broken_observer_does_not_change_the_verdict() -> None:
    def explode(*args: object) -> None:
        raise OSError("log disk full")

    result = await Pipeline([Fixed("a", Outcome.proceed())], observer=explode).run(Stage.RCPT, ctx())
    assert result.action is Action.CONTINUE


class AntiSpam(Fixed):
    antispam = True


async def test_an_exempt_context_skips_anti_spam_agents_but_never_hard_controls() -> None:
    spam = AntiSpam("dnsbl", Outcome.proceed(Finding("DNSBL_LISTED", "dnsbl")))
    hard = Fixed("relay", Outcome.reject(REJECT, Finding("RCPT_RELAY_DENIED", "relay")))
    exempt = StageContext(Stage.RCPT, ctx().session, exempt="client on the IP allow list")
    result = await Pipeline([spam, hard]).run(Stage.RCPT, exempt)
    assert spam.calls == 0 and hard.calls == 1 and result.action is Action.REJECT
    await Pipeline([spam]).run(Stage.RCPT, ctx())
    assert spam.calls == 1


async def test_the_pipeline_gives_each_finding_its_stage_and_its_weight() -> None:
    from edgeward.filters.scoring import ScoreTable

    agent = AntiSpam("dnsbl", Outcome.proceed(Finding("DNSBL_LISTED", "dnsbl", "zen")))
    result = await Pipeline([agent], scores=ScoreTable({"DNSBL_LISTED": 2.5})).run(Stage.RCPT, ctx())
    [finding] = result.findings
    assert (finding.name, finding.stage, finding.score) == ("DNSBL_LISTED", "rcpt", 2.5)
    assert finding.detail == "zen"


class Waits(Fixed):
    """Awaits a few times (a real wait, then a yield to the loop) before it answers."""

    def __init__(self, name: str, outcome: Outcome) -> None:
        super().__init__(name, outcome)
        self.cleaned_up = False
        self.event = asyncio.Event()

    async def check(self, stage: Stage, c: StageContext) -> Outcome:
        try:
            await self.event.wait()
            await asyncio.sleep(0)
            return self.outcome
        finally:
            self.cleaned_up = True


async def test_an_agent_that_waits_then_answers_is_heard() -> None:
    agent = Waits("waits", Outcome.reject(REJECT, Finding("W_BAD", "waits")))
    asyncio.get_running_loop().call_later(0.01, agent.event.set)
    result = await Pipeline([agent], timeout=5).run(Stage.RCPT, ctx())
    assert result.action is Action.REJECT and result.decided_by == "waits" and agent.cleaned_up


async def test_an_agent_that_waits_past_the_limit_is_cut_and_told() -> None:
    agent = Waits("stuck", Outcome.proceed())
    result = await Pipeline([agent], timeout=0.05).run(Stage.RCPT, ctx())
    assert result.action is Action.TEMPFAIL and result.outcome.findings[0].detail == "timed out"
    assert agent.cleaned_up  # the cancellation reached the agent's own code


async def test_cancelling_a_stage_cancels_the_waiting_agent() -> None:
    agent = Waits("waits", Outcome.proceed())
    task = asyncio.create_task(Pipeline([agent], timeout=5).run(Stage.RCPT, ctx()))
    await asyncio.sleep(0.01)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the stage was not cancelled")
    assert agent.cleaned_up


class Sleeps(Fixed):
    """Waits ``delay`` seconds on the loop, then answers."""

    def __init__(self, name: str, outcome: Outcome, delay: float) -> None:
        super().__init__(name, outcome)
        self.delay = delay

    async def check(self, stage: Stage, c: StageContext) -> Outcome:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return self.outcome


async def test_a_slow_agent_among_fast_ones_is_named_and_timed_out() -> None:
    before = [Fixed("fast1", Outcome.proceed(Finding("F1", "fast1"))), Sleeps("quick", Outcome.proceed(), 0)]
    slow = Slow("slow", Outcome.proceed())
    after = Fixed("fast2", Outcome.proceed())
    result = await Pipeline([*before, slow, after], timeout=0.05).run(Stage.RCPT, ctx())
    assert result.action is Action.TEMPFAIL and result.outcome.reply == AGENT_FAILURE
    failure = result.outcome.findings[-1]
    assert (failure.name, failure.agent, failure.detail) == ("AGENT_FAILURE", "slow", "timed out")
    assert [f.name for f in result.outcome.findings] == ["F1", "AGENT_FAILURE"]
    assert after.calls == 0


async def test_a_fail_open_slow_agent_is_timed_out_and_the_agents_after_it_still_run() -> None:
    slow = Slow("slow", Outcome.proceed())
    slow.fail_open = True
    waits = Sleeps("waits", Outcome.reject(REJECT, Finding("W_BAD", "waits")), 0.01)
    result = await Pipeline([Fixed("fast", Outcome.proceed()), slow, waits], timeout=0.05).run(
        Stage.RCPT, ctx()
    )
    assert result.action is Action.REJECT and result.decided_by == "waits"
    assert [(f.name, f.agent) for f in result.findings] == [("AGENT_FAILURE", "slow"), ("W_BAD", "waits")]


async def test_the_limit_is_per_agent_not_per_stage() -> None:
    # Together the three take longer than the limit; each alone stays well inside it.
    agents = [Sleeps(name, Outcome.proceed(), 0.2) for name in ("a", "b", "c")]
    result = await Pipeline(agents, timeout=0.5).run(Stage.RCPT, ctx())
    assert result.action is Action.CONTINUE and result.findings == ()
    assert [a.calls for a in agents] == [1, 1, 1]


class CancelledFromOutside(Waits):
    """Waits; while it does, someone else cancels the stage's task."""

    async def check(self, stage: Stage, c: StageContext) -> Outcome:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().call_soon(task.cancel)
        return await super().check(stage, c)


async def test_a_cancellation_from_outside_stays_a_cancellation_after_a_timeout() -> None:
    slow = Slow("slow", Outcome.proceed())
    slow.fail_open = True
    waits = CancelledFromOutside("waits", Outcome.proceed())
    try:
        await asyncio.create_task(Pipeline([slow, waits], timeout=0.05).run(Stage.RCPT, ctx()))
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the stage was not cancelled")
    assert waits.cleaned_up
