"""The multi-engine policy (scan-engine bias) over fake engines."""

from __future__ import annotations

import asyncio

import pytest

from edgeward.ports import ScanItem
from edgeward.scanning.policy import Bias, Engine, MultiEnginePolicy, ScanReport
from edgeward.testing.scanner import FakeScanner

VIRUS = b"VIRUS-PATTERN"
ITEMS = [ScanItem(b"hello", "1"), ScanItem(b"xx VIRUS-PATTERN xx", "2", "a.exe")]


def engines(*states: str, required: str = "") -> list[Engine]:
    """One fake engine per state: ok, down, failing, slow (outlives its timeout), big (refuses)."""
    made = []
    for i, state in enumerate(states):
        fake = FakeScanner({VIRUS: f"Sig-{i}"}, name=f"e{i}")
        fake.down = state == "down"
        fake.failing = state == "failing"
        if state == "slow":
            fake.delay = 30.0
        if state == "big":
            fake.max_stream = 4
        made.append(Engine(fake, timeout=0.05 if state == "slow" else 5.0, required=f"e{i}" == required))
    return made


def scan(bias: Bias, found: list[Engine], items: list[ScanItem] = ITEMS) -> ScanReport:
    return asyncio.run(MultiEnginePolicy(found, bias).scan(items))


@pytest.mark.parametrize(
    ("bias", "states", "scanned"),
    [
        ("all", ("ok", "ok", "ok"), True),
        ("all", ("ok", "ok", "down"), False),
        ("majority", ("ok", "ok", "down"), True),
        ("majority", ("ok", "down", "slow"), False),
        ("majority", ("ok", "down"), False),  # half is not a majority
        ("any", ("down", "failing", "ok"), True),
        ("any", ("down", "failing", "slow"), False),
        ("all", (), False),  # nothing to scan with is never "scanned"
        ("any", (), False),
    ],
)
def test_the_bias_decides_whether_answers_suffice(bias: Bias, states: tuple[str, ...], scanned: bool) -> None:
    report = scan(bias, engines(*states))
    assert report.scanned is scanned
    ok = sorted(f"e{i}" for i, s in enumerate(states) if s == "ok")
    assert sorted(report.answered) == ok
    others = sorted(f"e{i}" for i in range(len(states)) if f"e{i}" not in ok)
    assert sorted(f.engine for f in report.failed) == others


def test_hits_of_every_answering_engine_count_even_when_the_bias_is_missed() -> None:
    report = scan("all", engines("ok", "down", "ok"))
    assert not report.scanned
    found = [(h.engine, h.signature, h.path) for h in report.hits]
    assert found == [("e0", "Sig-0", "2"), ("e2", "Sig-2", "2")]


def test_a_required_engine_must_answer_whatever_the_bias() -> None:
    assert not scan("any", engines("ok", "down", required="e1")).scanned
    assert scan("any", engines("down", "ok", required="e1")).scanned


def test_a_timeout_and_a_reason_are_reported_per_engine() -> None:
    report = scan("any", engines("ok", "slow", "failing"))
    reasons = {f.engine: f.reason for f in report.failed}
    assert "no answer within 0.05s" in reasons["e1"] and "unreadable" in reasons["e2"]
    assert report.scanned and not report.unscannable


def test_engines_run_at_the_same_time() -> None:
    # Each fake waits until all three have started: only concurrent scans can all finish.
    started: list[str] = []
    everyone = asyncio.Event()

    class Waiting(FakeScanner):
        async def scan(self, items):  # type: ignore[no-untyped-def]
            started.append(self.name)
            if len(started) == 3:
                everyone.set()
            await everyone.wait()
            return await super().scan(items)

    found = [Engine(Waiting({VIRUS: "S"}, name=f"w{i}"), timeout=5.0) for i in range(3)]
    report = scan("all", found)
    assert report.scanned and len(report.hits) == 3


def test_an_item_too_large_is_unscannable_not_an_outage() -> None:
    report = scan("all", engines("ok", "big"))
    assert not report.scanned and report.unscannable
    assert [f.too_large for f in report.failed] == [True]
    report = scan("all", engines("big", "down"))
    assert not report.scanned and not report.unscannable  # an outage is also involved


def test_an_engine_that_raises_anything_is_that_engines_failure() -> None:
    class Broken(FakeScanner):
        async def scan(self, items):  # type: ignore[no-untyped-def]
            raise KeyError("bug")

    report = scan("any", [Engine(Broken(name="broken"), 5.0), *engines("ok")])
    assert report.scanned and report.failed[0].engine == "broken" and "KeyError" in report.failed[0].reason


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failed_engine_is_skipped_until_retry_after_then_probed_once() -> None:
    slow = FakeScanner({VIRUS: "Sig"}, name="clamd", delay=30.0)
    clock = Clock()
    policy = MultiEnginePolicy([Engine(slow, timeout=0.05)], "all", retry_after=10.0, clock=clock)

    async def run() -> None:
        first = await policy.scan(ITEMS)
        assert not first.scanned and "no answer within 0.05s" in first.failed[0].reason
        asked = len(slow.scanned)
        assert asked == 1
        # Paused: the engine is not asked, the message gets the bias's answer (not scanned) at once.
        second = await policy.scan(ITEMS)
        assert not second.scanned and "not asked again for 10s" in second.failed[0].reason
        assert len(slow.scanned) == asked
        # The pause is over and the engine answers again: one probe closes the breaker.
        clock.now += 10.5
        slow.delay = 0.0
        third = await policy.scan(ITEMS)
        assert third.scanned and [h.signature for h in third.hits] == ["Sig"]
        assert "clamd" not in policy.paused

    asyncio.run(run())


def test_while_a_probe_runs_other_scans_skip_the_engine_and_a_failed_probe_pauses_again() -> None:
    slow = FakeScanner({VIRUS: "Sig"}, name="clamd", delay=30.0)
    clock = Clock()
    policy = MultiEnginePolicy([Engine(slow, timeout=0.2)], "all", retry_after=10.0, clock=clock)

    async def run() -> None:
        await policy.scan(ITEMS)
        clock.now += 11.0
        probe = asyncio.create_task(policy.scan(ITEMS))
        await asyncio.sleep(0.05)  # the probe is waiting on the frozen engine
        during = await policy.scan(ITEMS)
        assert "not asked again" in during.failed[0].reason
        assert "no answer within" in (await probe).failed[0].reason
        assert policy.paused["clamd"][0] == clock.now + 10.0

    asyncio.run(run())


def test_too_large_items_and_a_zero_retry_after_never_pause_an_engine() -> None:
    big = engines("big")
    policy = MultiEnginePolicy(big, "all", retry_after=10.0)
    assert asyncio.run(policy.scan(ITEMS)).unscannable and policy.paused == {}
    slow = engines("slow")
    policy = MultiEnginePolicy(slow, "all")
    asyncio.run(policy.scan(ITEMS))
    assert policy.paused == {}
    assert "no answer within" in asyncio.run(policy.scan(ITEMS)).failed[0].reason
