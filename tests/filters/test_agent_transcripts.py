"""Golden transcripts of every agent: one refused and one passed session each, replayed over a
real session on loopback (``agent_transcript``), replies compared byte for byte and every
refusal checked in the tracking log with its findings and the rule that decided; where a
transcript says so, the queued and quarantined messages are checked too.

``EDGEWARD_REGEN_TRANSCRIPTS=1`` rewrites the replies and tracking lines that changed instead of
failing on them (``agent_transcript`` says what it can and cannot regenerate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.config.schema import AGENT_NAMES
from tests.filters.agent_transcript import REGENERATE, parse, regenerate, replay

TRANSCRIPTS = Path(__file__).parent / "transcripts"
FILES = sorted(TRANSCRIPTS.glob("*.txt"))


def test_every_agent_has_a_refused_and_a_passed_transcript() -> None:
    names = {p.name for p in FILES}
    missing = [f"{agent}.{kind}.txt" for agent in AGENT_NAMES for kind in ("refused", "passed")
               if f"{agent}.{kind}.txt" not in names]  # fmt: skip
    assert missing == []


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_transcript(path: Path, tmp_path: Path) -> None:
    script = parse(path)
    agent = path.name.split(".")[0]
    assert agent in script.agents or agent == "relay-control", "a transcript runs the agent it is named for"
    run = await replay(script, tmp_path)
    if REGENERATE:
        regenerate(script, run)
        assert run.structural == [], "regeneration cannot move steps: edit the transcript by hand"
        assert run.missing_holds(script.holds) == []
        return
    assert run.mismatches == []
    assert run.tracking_matches(script.tracking), (run.tracking, script.tracking)
    assert run.missing_holds(script.holds) == []
