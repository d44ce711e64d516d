"""Multiprocess mode with real processes: each counts in its own file, the exporter sums them.

Every process here is a child: switching this test process to the files would change how the
rest of the suite counts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edgeward.metrics import ProcessMetrics, StateCollector, metrics_dir, reset
from tests.metrics.counting import count_in as _count


def _scrape(*collectors: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_three_processes_and_a_forked_worker_are_summed(tmp_path: Path) -> None:
    folder = metrics_dir(tmp_path)
    reset(folder)
    _count(folder)
    _count(folder)
    _count(folder, "fork")
    assert len(list(folder.glob("counter_*.db"))) == 4  # three processes and the forked worker
    got = _scrape(ProcessMetrics(folder))
    assert got[("edgeward_connections_total", (("connector", "internet"), ("result", "accepted")))] == 3
    assert got[("edgeward_messages_total", (("event", "received"),))] == 4
    assert got[("edgeward_delivery_results_total", (("next_hop", "inbound"), ("result", "delivered")))] == 6
    assert got[("edgeward_delivery_seconds_count", (("next_hop", "inbound"),))] == 3
    assert got[("edgeward_delivery_seconds_bucket", (("le", "0.1"), ("next_hop", "inbound")))] == 0
    assert got[("edgeward_delivery_seconds_bucket", (("le", "0.25"), ("next_hop", "inbound")))] == 3


def test_reset_starts_every_counter_again(tmp_path: Path) -> None:
    folder = metrics_dir(tmp_path)
    reset(folder)
    _count(folder)
    reset(folder)
    assert not any(folder.iterdir())
    _count(folder)
    got = _scrape(ProcessMetrics(folder))
    assert got[("edgeward_messages_total", (("event", "received"),))] == 1


def test_a_folder_not_made_yet_exports_nothing(tmp_path: Path) -> None:
    assert _scrape(ProcessMetrics(tmp_path / "missing")) == {}


def test_state_is_read_at_scrape_and_one_broken_source_spares_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    depth = {"incoming": 2}

    def broken() -> list[tuple[str, str, float]]:
        raise OSError("store unreadable")

    collector = StateCollector(lambda: depth, ("incoming", "deferred"), lambda: 1234, broken)
    got = _scrape(collector)
    assert got[("edgeward_queue_messages", (("state", "incoming"),))] == 2
    assert got[("edgeward_queue_messages", (("state", "deferred"),))] == 0
    assert got[("edgeward_spool_free_bytes", ())] == 1234
    assert "expiry could not be read" in caplog.text
    depth["deferred"] = 5
    ok = StateCollector(lambda: depth, ("deferred",), lambda: 1, lambda: [("ab12", "CN=mx", 30.0)])
    got = _scrape(ok)
    assert got[("edgeward_queue_messages", (("state", "deferred"),))] == 5
    assert got[("edgeward_certificate_expiry_days", (("subject", "CN=mx"), ("thumbprint", "ab12")))] == 30
