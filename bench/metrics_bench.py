"""What counting costs one message: the metric updates a clean relayed message makes, timed.

A clean message accepted, rated and delivered makes these updates (``edgeward.metrics``): one
connection, three agent findings (SCL, PCL, SRL), the classifier time, RECEIVE, one delivery
time, one delivery result and SEND: nine in all, split between the receiving and the delivery
process. This runs them in a loop in multiprocess mode (the files in a temporary folder, as
``serve`` does) and in memory, and prints microseconds per message; the relay benchmark
(``smtp_relay_bench.py``) is too noisy on a shared machine to see a difference this small.

    .venv/bin/python bench/metrics_bench.py [--messages 50000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeward import metrics


def one_message() -> None:
    metrics.count_connection("internet", "accepted")
    metrics.count_agent_outcome("content-filter", "continue", ("SCL_1", "PCL_1"))
    metrics.count_agent_outcome("sender-reputation", "continue", ("SRL_4",))
    metrics.observe_classifier(0.0012, "inline")
    metrics.count_message("RECEIVE")
    metrics.DELIVERY_SECONDS.labels(metrics.next_hop_label("inbound", "smarthost", "x")).observe(0.014)
    metrics.count_delivery("inbound", "delivered")
    metrics.count_message("SEND")


def run(messages: int, repeat: int) -> float:
    """Best of ``repeat`` runs, in microseconds per message."""
    one_message()  # the label children exist after the first message
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(messages):
            one_message()
        best = min(best, (time.perf_counter() - started) / messages * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=50000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--mode", choices=("both", "files", "memory"), default="both")
    args = ap.parse_args()
    if args.mode == "both":  # each mode in a fresh process: the switch is once per process
        for mode in ("memory", "files"):
            cmd = [sys.executable, __file__, "--mode", mode, "--messages", str(args.messages),
                   "--repeat", str(args.repeat)]  # fmt: skip
            subprocess.run(cmd, check=True)
        return
    with tempfile.TemporaryDirectory(prefix="edgeward-metrics-bench-") as folder:
        if args.mode == "files":
            metrics.enable(Path(folder))
        us = run(args.messages, args.repeat)
        print(f"{args.mode:>6}: {us:.1f} us per message (9 updates, best of {args.repeat} x {args.messages})")


if __name__ == "__main__":
    main()
