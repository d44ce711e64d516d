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
