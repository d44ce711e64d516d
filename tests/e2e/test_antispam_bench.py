"""The anti-spam benchmark in small: both stacks start in their namespace, every delivered
message carries each stack's verdicts, and every probe is refused by the check it targets.

Needs root (a network namespace) and the benchmark's Debian packages
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

NEEDED = ("postfix", "smtp-sink", "nsd", "unbound", "ip", "opendkim", "opendmarc", "policyd-spf")


def test_both_stacks_check_every_message(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the benchmark needs root (ip netns, Postfix's master)")
    missing = [b for b in NEEDED if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/install-bench-deps.sh)")
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(Path(REPO) / "bench" / "antispam_bench.py"), "--messages", "40",
         "--warmup", "8", "--sessions", "4", "--repeat", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    runs = {r["stack"]: r for r in report["runs"]}
    assert set(runs) == {"postfix", "edgeward"}
    assert all(r["messages"] == 40 for r in runs.values())
    # Every connection of the pass went through postscreen, not straight to smtpd.
    assert runs["postfix"]["postscreen_passes"] >= 40
    probes = report["probes"]
    for stack in ("postfix", "edgeward"):
        by_name = {line.split(":", 1)[0]: line.split(":", 1)[1] for line in probes[stack]}
        assert by_name["DNSBL-listed client"].strip().startswith("550")
        assert by_name["SPF fail"].strip().startswith("550")
        assert by_name["DMARC p=reject fail"].strip().startswith("550")
        assert by_name["broken DKIM signature"].strip().startswith("250")
    assert probes["postfix"] and any(line.startswith("pregreet: 550") for line in probes["postfix"])
    assert any(line.startswith("GTUBE (content filter): 550") for line in probes["edgeward"])


def test_the_benchmark_lives_where_the_docs_say() -> None:
    assert (Path(REPO) / "bench" / "README-antispam.md").exists()
    assert (Path(REPO) / "scripts" / "install-bench-deps.sh").exists()
