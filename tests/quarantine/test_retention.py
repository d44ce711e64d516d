"""Quarantine retention over a real store: what is old goes, is reported, and nothing else does."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edgeward.quarantine.retention import expire_once, run_retention
from edgeward.quarantine.store import QuarantineEntry, QuarantineStore

DAY = 86400.0
NOW = 1_800_000_000.0


class Clock:
    def now(self) -> float:
        return NOW


def entry(age_days: float) -> QuarantineEntry:
    return QuarantineEntry("", "a@remote.test", ("u@example.test",), "content-filter",
                           quarantined_at=NOW - age_days * DAY)  # fmt: skip


def filled(tmp_path: Path) -> tuple[QuarantineStore, dict[float, str]]:
    store = QuarantineStore(tmp_path / "q", fsync=False)
    return store, {age: store.put(entry(age), b"x\r\n") for age in (0, 29.9, 30.1, 400)}


async def test_entries_older_than_the_retention_are_deleted_and_reported(tmp_path: Path) -> None:
    store, ids = filled(tmp_path)
    seen: list[str] = []
    gone = await expire_once(store, 30 * DAY, lambda e: seen.append(e.qid), Clock())
    assert sorted(e.qid for e in gone) == sorted(seen) == sorted([ids[30.1], ids[400]])
    assert sorted(e.qid for e in store.list()) == sorted([ids[0], ids[29.9]])
    assert not (tmp_path / "q" / f"{ids[400]}.eml").exists()


async def test_zero_retention_keeps_everything(tmp_path: Path) -> None:
    store, ids = filled(tmp_path)
    assert await expire_once(store, 0, lambda e: None, Clock()) == []
    assert len(store.list()) == len(ids)


async def test_the_loop_survives_a_failing_round_and_reads_the_retention_each_time(tmp_path: Path) -> None:
    store, ids = filled(tmp_path)
    rounds: list[float] = []
    seen: list[str] = []
    done = asyncio.Event()

    def retention() -> float:
        rounds.append(1)
        if len(rounds) == 1:
            raise RuntimeError("configuration briefly unreadable")
        return 100 * DAY if len(rounds) == 2 else 30 * DAY

    def expired(e: QuarantineEntry) -> None:
        seen.append(e.qid)
        if len(seen) == 2:
            done.set()

    task = asyncio.create_task(run_retention(store, retention, expired, interval=0.01, clock=Clock()))
    await asyncio.wait_for(done.wait(), 30)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # Round 1 failed, round 2 (100 days) took the oldest, round 3 (30 days) the next.
    assert seen == [ids[400], ids[30.1]] and len(rounds) >= 3
