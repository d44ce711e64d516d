"""The overload benchmark in small: a crowd of idle connections fills the connector, a normal
client from another address still gets its message accepted."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import REPO

pytestmark = pytest.mark.e2e


def test_a_normal_client_gets_through_a_full_connector() -> None:
    spec = importlib.util.spec_from_file_location("overload_bench", REPO / "bench" / "overload_bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    try:
        spec.loader.exec_module(bench)
    finally:
        del sys.modules[spec.name]
    args = bench.parser().parse_args(
        ["--attackers", "300", "--addresses", "10", "--max-connections", "200", "--per-source", "50"]
    )
    figures = bench.run(args)
    assert figures.normal_reply.startswith("250 2.0.0"), figures
    # The crowd filled the connector and the rest of it was refused, not queued or crashed.
    assert figures.held == 200
    assert figures.refused + figures.evicted >= 100
    assert figures.failed == 0 and not figures.other
    # The normal client's slot came from an idle connection closed with 421 4.7.0.
    assert figures.evicted >= 1


def test_the_benchmark_lives_where_the_docs_say() -> None:
    assert (Path(REPO) / "bench" / "README-overload.md").exists()
