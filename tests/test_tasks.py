"""The background task supervisor: restart with growing pauses, loud logs, clean shutdown."""

from __future__ import annotations

import asyncio
import logging

import pytest

from edgeward.tasks import TaskSupervisor


class Flaky:
    """Dies ``deaths`` times, then runs until ``release`` is set and returns."""

    def __init__(self, deaths: int) -> None:
        self.deaths = deaths
        self.starts = 0
        self.running = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self) -> None:
        self.starts += 1
        if self.starts <= self.deaths:
            raise RuntimeError(f"death {self.starts}")
        self.running.set()
        await self.release.wait()


async def test_a_dying_task_is_restarted_with_growing_pauses(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSupervisor(first_pause=0.001, max_pause=0.004)
    work = Flaky(deaths=4)
    with caplog.at_level(logging.WARNING, logger="edgeward.tasks"):
        tasks.start("worker", work)
        await asyncio.wait_for(work.running.wait(), 30)
    assert work.starts == 5 and tasks.restarts == {"worker": 4}
    died = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage().rsplit(" ", 1)[1] for r in died] == ["0.001s", "0.002s", "0.004s", "0.004s"]
    assert all(r.exc_info and "death" in str(r.exc_info[1]) for r in died)  # the traceback is logged
    assert "background task worker died (restart 1)" in died[0].getMessage()
    assert caplog.text.count("background task worker restarted") == 4
    work.release.set()
    assert await tasks.wait("worker", 30)


async def test_a_task_that_returns_is_not_restarted() -> None:
    tasks = TaskSupervisor(first_pause=0.001)
    work = Flaky(deaths=0)
    tasks.start("worker", work)
    await asyncio.wait_for(work.running.wait(), 30)
    work.release.set()
    assert await tasks.wait("worker", 30)
    assert work.starts == 1 and tasks.restarts == {"worker": 0}


async def test_no_restart_once_retired(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSupervisor(first_pause=0.001)
    tasks.retire()
    work = Flaky(deaths=1)
    tasks.start("worker", work)
    assert await tasks.wait("worker", 30)
    assert work.starts == 1
    assert "failed while stopping" in caplog.text


async def test_cancel_ends_running_and_pausing_tasks() -> None:
    tasks = TaskSupervisor(first_pause=3600)
    running, dying = Flaky(deaths=0), Flaky(deaths=1)
    tasks.start("running", running)
    tasks.start("dying", dying)
    await asyncio.wait_for(running.running.wait(), 30)
    await tasks.cancel()
    assert await tasks.wait("running", 0) and await tasks.wait("dying", 0)
    assert dying.starts == 1


async def test_one_task_per_name() -> None:
    tasks = TaskSupervisor()
    work = Flaky(deaths=0)
    tasks.start("worker", work)
    with pytest.raises(RuntimeError, match="already runs"):
        tasks.start("worker", work)
    await tasks.cancel()


async def test_a_run_that_lasted_starts_the_pauses_afresh(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSupervisor(first_pause=0.001, max_pause=1.0, healthy_after=0)
    work = Flaky(deaths=3)
    with caplog.at_level(logging.ERROR, logger="edgeward.tasks"):
        tasks.start("worker", work)
        await asyncio.wait_for(work.running.wait(), 30)
    assert [r.getMessage().rsplit(" ", 1)[1] for r in caplog.records] == ["0.001s"] * 3
    await tasks.cancel()
