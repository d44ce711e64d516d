"""The anti-virus benchmark in small: both stacks start on one clamd, every infected message is
refused by both naming the test signature, every clean one reaches the sink with the stack's
scan header (the benchmark's own check fails the run otherwise, and this reads its report).

Needs root (amavisd drops to its user) and the benchmark's Debian packages
(scripts/install-bench-deps.sh); skipped without them. Nothing here looks at a rate or a time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import REPO

pytestmark = pytest.mark.e2e

NEEDED = ("smtp-sink", "clamd", "amavisd")


def test_both_stacks_scan_every_message(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the benchmark needs root (amavisd drops to its user, smtp-sink to nobody)")
    missing = [b for b in NEEDED if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/install-bench-deps.sh)")
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(Path(REPO) / "bench" / "av_bench.py"), "--messages", "20",
         "--warmup", "10", "--sessions", "2", "--repeat", "1", "--filler", "100", "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode == 1 and "shared corpus is missing" in done.stderr:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    runs = {r["stack"]: r for r in report["runs"]}
    assert set(runs) == {"amavis", "edgeward"}
    for run in runs.values():
        # 2 cycles of the mix: 6 EICAR messages refused, 14 clean ones delivered (and checked).
        assert (run["messages"], run["refused"], run["delivered"]) == (20, 6, 14)
        assert run["peak_rss_mb"] > 0 and run["cpu_ms_per_msg"] > 0
    assert "with X-Virus-Scanned" in done.stdout and "with X-Edgeward-AV" in done.stdout
    assert set(report["ratios"]) == {"msg/s", "p99", "CPU/msg", "peak RSS"}
    config = report["stacks"]["amavis"]["config"]
    assert "@bypass_spam_checks_maps = (1);" in config and "CONTSCAN" in config


def test_the_benchmark_lives_where_the_docs_say() -> None:
    assert (Path(REPO) / "bench" / "README-av.md").exists()
    assert "amavisd-new" in (Path(REPO) / "scripts" / "install-bench-deps.sh").read_text()
