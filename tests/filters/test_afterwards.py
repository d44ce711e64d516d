"""Lessons after the reply (``filters.afterwards``): sender reputation's counting leaves the
verdict's path but is never lost, never piles up without bound and never raises into a session."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path

import pytest

from edgeward.config.schema import ReceiveConnectorConfig, ReputationConfig
from edgeward.filters.afterwards import Afterwards
from edgeward.filters.agents.reputation import SenderReputation
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.verdict import Verdict
from edgeward.state.policy import SqlitePolicyStore
from edgeward.testing.dns import FakeResolver
from edgeward.types import Action, Finding, Peer

IP = "192.0.2.10"
CONNECTOR = ReceiveConnectorConfig(name="internet")


def ctx() -> StageContext:
    return StageContext(Stage.EOD, SessionInfo("S1", Peer(IP, 4000), CONNECTOR))


def verdict(*names: str) -> Verdict:
    return Verdict(Action.CONTINUE, None, tuple(Finding(n, "x") for n in names), (), 0.0, "test", "")


class HeldStore(SqlitePolicyStore):
    """The real SQLite store, whose writes of the history wait until the test lets them go."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()
        self.waiting = 0

    async def incr_many(self, counts: Mapping[str, int], *, window: float) -> dict[str, int]:
        self.waiting += 1
        await self.gate.wait()
        return await super().incr_many(counts, window=window)


async def test_the_verdict_does_not_wait_for_the_store_and_the_counts_land(tmp_path: Path) -> None:
    async with HeldStore(tmp_path / "policy.db") as store:
        later = Afterwards()
        rep = SenderReputation(store, FakeResolver(), ReputationConfig(), afterwards=later)
        for _ in range(3):
            # Returns while the store is held: the session would send its 250 now.
            await asyncio.wait_for(rep.learned(ctx(), verdict("SCL_9", "RDNS_NONE")), 1.0)
        await asyncio.sleep(0)
        assert later.pending == 3 and store.waiting == 3
        assert await store.get(f"rep:{IP}:n") is None
        store.gate.set()
        await later.drain(5.0)
        assert later.pending == 0
        assert await store.get(f"rep:{IP}:n") == "3"
        assert await store.get(f"rep:{IP}:scl") == "27"
        assert await store.get(f"rep:{IP}:rdns") == "3"


async def test_without_afterwards_the_counts_are_written_before_learned_returns(tmp_path: Path) -> None:
    async with SqlitePolicyStore(tmp_path / "policy.db") as store:
        rep = SenderReputation(store, FakeResolver(), ReputationConfig())
        await rep.learned(ctx(), verdict("SCL_4"))
        assert await store.get(f"rep:{IP}:scl") == "4"


async def test_past_the_limit_a_session_waits_for_its_lesson() -> None:
    later = Afterwards(limit=2)
    gate = asyncio.Event()
    done: list[int] = []

    async def lesson(n: int) -> None:
        await gate.wait()
        done.append(n)

    await later.submit(lesson(1))
    await later.submit(lesson(2))
    third = asyncio.create_task(later.submit(lesson(3)))
    await asyncio.sleep(0.05)
    assert not third.done() and later.pending == 2  # back-pressure, not a third task
    gate.set()
    await asyncio.wait_for(third, 1.0)
    await later.drain(1.0)
    assert sorted(done) == [1, 2, 3]


async def test_a_failing_lesson_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    later = Afterwards()

    async def broken() -> None:
        raise RuntimeError("store exploded")

    await later.submit(broken())
    with caplog.at_level(logging.ERROR, logger="edgeward.policy"):
        await later.drain(1.0)
    assert "learning from a verdict failed" in caplog.text and "store exploded" in caplog.text


async def test_drain_cancels_what_outlives_the_grace(caplog: pytest.LogCaptureFixture) -> None:
    later = Afterwards()
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await later.submit(stuck())
    with caplog.at_level(logging.ERROR, logger="edgeward.policy"):
        await later.drain(0.05)
    assert cancelled.is_set() and later.pending == 0
    assert "1 lessons of verdicts not finished at stop" in caplog.text
