"""A child process that counts a fixed set of samples in a metrics folder."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from edgeward.metrics import ENV

REPO = Path(__file__).resolve().parents[2]

COUNT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from edgeward import metrics
    metrics.enable(Path(sys.argv[1]))
    assert metrics.enabled_dir() == Path(sys.argv[1])
    metrics.count_connection("internet", "accepted")
    metrics.count_message("RECEIVE")
    metrics.count_delivery("inbound", "delivered", 2)
    metrics.DELIVERY_SECONDS.labels("inbound").observe(0.2)
    if len(sys.argv) > 2:  # a worker forked after counting started counts in a file of its own
        pid = os.fork()
        if pid == 0:
            metrics.count_message("RECEIVE")
            os._exit(0)
        os.waitpid(pid, 0)
    """
)


def count_in(folder: Path, *extra: str) -> None:
    """Count a fixed set of samples in ``folder`` from a new process (and a fork of it with ``extra``)."""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["PYTHONPATH"] = str(REPO / "src")
    subprocess.run([sys.executable, "-c", COUNT, str(folder), *extra], check=True, env=env, timeout=60)
