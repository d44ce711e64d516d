"""The console's /metrics carries the counters the gateway's processes keep in state/metrics."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from edgeward.metrics import metrics_dir, reset
from edgeward.web.app import create_app
from tests.metrics.counting import count_in
from tests.web.conftest import make_config


def test_metrics_sums_the_gateway_processes_next_to_the_console_gauges(tmp_path: Path) -> None:
    config = make_config(tmp_path, metrics_allow=["0.0.0.0/0"])
    folder = metrics_dir(config.resolve(Path("state")))
    reset(folder)
    count_in(folder)
    count_in(folder)
    with TestClient(create_app(config), base_url="https://testserver", client=("192.0.2.1", 5000)) as client:
        text = client.get("/metrics").text
    assert 'edgeward_messages_total{event="received"} 2.0' in text
    assert 'edgeward_connections_total{connector="internet",result="accepted"} 2.0' in text
    assert 'edgeward_queue_messages{state="incoming"} 0.0' in text  # the console's own collector


def test_metrics_before_the_gateway_ever_ran_has_the_console_gauges_only(tmp_path: Path) -> None:
    config = make_config(tmp_path, metrics_allow=["0.0.0.0/0"])
    with TestClient(create_app(config), base_url="https://testserver", client=("192.0.2.1", 5000)) as client:
        r = client.get("/metrics")
    assert r.status_code == 200
    assert "edgeward_queue_messages" in r.text and "edgeward_messages_total" not in r.text
