"""docs/grafana-dashboard.json: valid JSON, a panel per family, and only metric names that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgeward.metrics import REGISTRY, STATE_FAMILIES
from edgeward.web.app import create_app
from edgeward.web.metrics import GatewayCollector
from tests.web.conftest import make_config

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
NAME = re.compile(r"\bedgeward_[a-z_]+")
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def _family(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def _used() -> set[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    assert all(p["targets"] for p in doc["panels"])
    return {_family(name) for expr in exprs for name in NAME.findall(expr)}


def _known(tmp_path: Path) -> set[str]:
    console = create_app(make_config(tmp_path)).state.console
    web = {m.name for m in GatewayCollector(console).collect()}
    return {m.name for m in REGISTRY.collect()} | set(STATE_FAMILIES) | web


def test_every_metric_the_dashboard_uses_exists(tmp_path: Path) -> None:
    unknown = _used() - _known(tmp_path)
    assert not unknown, f"the dashboard asks for metrics nobody exports: {sorted(unknown)}"


def test_every_family_the_gateway_counts_has_a_panel() -> None:
    counted = {m.name for m in REGISTRY.collect()} | set(STATE_FAMILIES)
    missing = counted - _used()
    assert not missing, f"no panel shows {sorted(missing)}"
