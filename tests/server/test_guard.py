"""The read guard: time limits, the minimum data rate as a deadline, and interrupts."""

from __future__ import annotations

import asyncio

import pytest

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.server.guard import (
    DATA_TOO_SLOW,
    IDLE_TIMEOUT,
    SESSION_TOO_LONG,
    SHUTTING_DOWN,
    ReadGuard,
    SessionEnd,
)
from edgeward.testing.clock import FakeClock


class _Stressed:
    def stressed(self) -> bool:
        return True

    def touch(self) -> None:
        pass


def _connector(**kw: object) -> ReceiveConnectorConfig:
    return ReceiveConnectorConfig.model_validate({"name": "internet", **kw})


async def test_a_body_below_the_minimum_rate_is_cut_once_past_the_grace() -> None:
    clock = FakeClock(monotonic_start=100.0)
    guard = ReadGuard(_connector(min_data_rate=100, min_data_rate_grace=5), clock=clock)
    reader = asyncio.StreamReader()
    reader.feed_data(b"x" * 400)
    assert await guard.read(reader, "DATA") == b"x" * 400  # the body starts at t=100
    clock.advance(4)  # within the grace
    reader.feed_data(b"y" * 50)
    assert await guard.read(reader, "DATA") == b"y" * 50
    # 450 bytes cover 4.5 s at 100 B/s, the grace 5 s: at t=106 the average is too low.
    clock.advance(2)
    reader.feed_data(b"z")
    with pytest.raises(SessionEnd) as end:
        await guard.read(reader, "DATA")
    assert end.value.reply == DATA_TOO_SLOW


async def test_the_rate_applies_per_body_and_only_in_data() -> None:
    clock = FakeClock()
    guard = ReadGuard(_connector(min_data_rate=100, min_data_rate_grace=1), clock=clock)
    reader = asyncio.StreamReader()
    reader.feed_data(b"x")
    await guard.read(reader, "DATA")
    clock.advance(50)  # a long pause between commands is the idle timeout's business
    reader.feed_data(b"NOOP\r\n")
    await guard.read(reader, "GREETED")
    reader.feed_data(b"x")
    assert await guard.read(reader, "DATA") == b"x"  # a new body, a new start


async def test_stress_shortens_the_wait() -> None:
    guard = ReadGuard(_connector(stress_idle_timeout=0.01, idle_timeout=60), slot=_Stressed())
    with pytest.raises(SessionEnd) as end:
        await guard.read(asyncio.StreamReader(), "GREETED")
    assert end.value.reply == IDLE_TIMEOUT


async def test_an_interrupt_wakes_a_session_between_commands_and_leaves_no_cancellation() -> None:
    guard = ReadGuard(_connector())
    reader = asyncio.StreamReader()
    task = asyncio.create_task(guard.read(reader, "GREETED"))
    await asyncio.sleep(0)
    assert guard.waiting
    assert guard.interrupt(SHUTTING_DOWN)
    with pytest.raises(SessionEnd) as end:
        await task
    assert end.value.reply == SHUTTING_DOWN
    assert task.cancelling() == 0


async def test_a_body_on_its_way_is_left_to_finish_then_the_session_ends() -> None:
    guard = ReadGuard(_connector())
    reader = asyncio.StreamReader()
    task = asyncio.create_task(guard.read(reader, "DATA"))
    await asyncio.sleep(0)
    assert not guard.interrupt(SHUTTING_DOWN)  # anytime=False: not woken in DATA
    reader.feed_data(b"rest of body\r\n.\r\n")
    assert await task == b"rest of body\r\n.\r\n"
    with pytest.raises(SessionEnd):
        await guard.read(reader, "GREETED")  # the next command is not waited for


async def test_at_the_end_of_the_grace_a_body_is_cut_too() -> None:
    guard = ReadGuard(_connector())
    task = asyncio.create_task(guard.read(asyncio.StreamReader(), "DATA"))
    await asyncio.sleep(0)
    guard.interrupt(SHUTTING_DOWN)
    assert guard.interrupt(SHUTTING_DOWN, anytime=True)
    with pytest.raises(SessionEnd):
        await task


async def test_junk_commands_are_counted_between_messages() -> None:
    guard = ReadGuard(_connector(max_junk_commands=2))
    assert not guard.junk_command()
    assert not guard.junk_command()
    reader = asyncio.StreamReader()
    reader.feed_data(b"body")
    await guard.read(reader, "DATA")  # a message resets the count
    assert not guard.junk_command()
    assert not guard.junk_command()
    assert guard.junk_command()


async def test_within_a_session_a_read_moves_the_session_timer_and_puts_it_back() -> None:
    guard = ReadGuard(_connector(idle_timeout=60, connection_timeout=300))
    reader = asyncio.StreamReader()
    async with asyncio.timeout(300) as session:
        guard.within(session)
        before = session.when()
        task = asyncio.create_task(guard.read(reader, "GREETED"))
        await asyncio.sleep(0)
        # While the read waits the one timer is at the idle limit, not the session's.
        assert session.when() is not None and before is not None and session.when() < before - 200
        reader.feed_data(b"NOOP\r\n")
        assert await task == b"NOOP\r\n"
        assert session.when() == before


async def _silent_session(guard: ReadGuard, session_limit: float) -> tuple[SessionEnd, int]:
    """A session of ``session_limit`` seconds whose client never speaks: how it ended, and the
    cancellations its task was left with."""

    async def session() -> SessionEnd:
        async with asyncio.timeout(session_limit) as limit:
            guard.within(limit)
            with pytest.raises(SessionEnd) as end:
                await guard.read(asyncio.StreamReader(), "GREETED")
        return end.value

    task = asyncio.create_task(session())
    end = await task
    return end, task.cancelling()


async def test_within_a_session_the_idle_limit_ends_it_with_its_reply_and_no_cancellation() -> None:
    guard = ReadGuard(_connector(stress_idle_timeout=0.01, idle_timeout=60), slot=_Stressed())
    end, cancelling = await _silent_session(guard, 300)
    assert end.reply == IDLE_TIMEOUT
    assert cancelling == 0


async def test_within_a_session_its_own_limit_ends_a_read_that_would_wait_longer() -> None:
    guard = ReadGuard(_connector(idle_timeout=60, connection_timeout=300))
    end, cancelling = await _silent_session(guard, 0.05)  # 50 ms left for the session, 60 s for the read
    assert end.reply == SESSION_TOO_LONG
    assert cancelling == 0
