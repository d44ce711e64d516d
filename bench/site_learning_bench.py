"""Does site learning delay the ``250``? The same load against a gateway that learns and one that does not.

Two in-process gateways of this checkout, one after the other in the same run, each sent
``--messages`` messages (the shipped spam sample) to a trap address over one SMTP connection
from the internet side. With learning on, every message is a lesson for the learning worker
(learned as spam in its thread while the next message arrives); with learning off the trap
still discards it, so the SMTP work is the same. Printed: the median and 95th percentile time
from the end of DATA to the reply, their ratios (on / off), and how many lessons were learned
or dropped (a small ``--queue-size`` shows drops instead of waiting).

    python bench/site_learning_bench.py                     # 300 messages each
    python bench/site_learning_bench.py --messages 500 --queue-size 10
"""

from __future__ import annotations

import argparse
import shutil
import smtplib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from tests.e2e.harness import InProcessGateway, free_port, gateway_config, shared_tmpdir  # noqa: E402

from edgeward.content.state import SqliteModelStateStore  # noqa: E402
from edgeward.paths import content_state_path  # noqa: E402

TRAP = "trap@example.test"
SAMPLE = (REPO / "tests" / "content" / "data" / "spam.eml").read_bytes()
SAMPLE = SAMPLE.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def run(learning: bool, messages: int, queue_size: int) -> dict[str, Any]:
    root = shared_tmpdir("edgeward-learn-bench-")
    port = free_port()
    config = gateway_config(
        root, port=port, learning={"enabled": learning, "trap_addresses": [TRAP], "queue_size": queue_size}
    )
    waits: list[float] = []
    try:
        with InProcessGateway(config) as gw:
            with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=60) as c:
                c.ehlo("client.remote.test")
                for _ in range(messages):
                    c.mail("bulk@remote.test")
                    c.rcpt(TRAP)
                    c.putcmd("data")
                    code, _ = c.getreply()
                    assert code == 354
                    c.send(SAMPLE + b".\r\n")
                    started = time.perf_counter()
                    code, _ = c.getreply()
                    waits.append(time.perf_counter() - started)
                    assert code == 250
            learner = gw.gateway.learner if gw.gateway is not None else None
            dropped = learner.dropped if learner is not None else 0
            if learner is not None:
                gw.call(learner.drain(600), 660)
        with SqliteModelStateStore(content_state_path(config)) as store:
            learned = sum(c.count for c in store.learned_counts())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    waits.sort()
    return {
        "median": statistics.median(waits),
        "p95": waits[int(len(waits) * 0.95) - 1],
        "learned": learned,
        "dropped": dropped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--queue-size", type=int, default=1000)
    args = parser.parse_args()
    off = run(False, args.messages, args.queue_size)
    on = run(True, args.messages, args.queue_size)
    print(f"{'':14}{'median ms':>12}{'p95 ms':>10}{'learned':>10}{'dropped':>10}")
    for name, r in (("learning off", off), ("learning on", on)):
        print(f"{name:14}{r['median'] * 1000:12.2f}{r['p95'] * 1000:10.2f}{r['learned']:10}{r['dropped']:10}")
    print(f"ratio on/off: median {on['median'] / off['median']:.2f}, p95 {on['p95'] / off['p95']:.2f}")


if __name__ == "__main__":
    main()
