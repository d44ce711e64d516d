"""kill -9 under load, a few cycles (the 20-cycle campaign is ``bench/fault_campaign.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import SmtpSink, free_port
from tests.faults.kit import run_kills

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_kill_9_of_the_whole_gateway_loses_no_acknowledged_message(workdir: Path, sink: SmtpSink) -> None:
    result = run_kills(workdir, free_port(), sink, kind="whole", cycles=3, seed=1)
    assert result.acked > 0 and len(result.cycles) == 3
    assert result.lost == set(), f"acknowledged but never delivered: {sorted(result.lost)[:10]}"
    assert result.undelivered == {}, "acknowledged messages left in the spool"
    assert result.delivered == result.acked


def test_kill_9_of_the_delivery_process_loses_no_acknowledged_message(workdir: Path, sink: SmtpSink) -> None:
    result = run_kills(workdir, free_port(), sink, kind="delivery", cycles=3, seed=2)
    assert result.acked > 0 and len(result.cycles) == 3
    assert result.lost == set(), f"acknowledged but never delivered: {sorted(result.lost)[:10]}"
    assert result.undelivered == {}, "acknowledged messages left in the spool"
    assert result.delivered == result.acked
