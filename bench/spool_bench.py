"""The spool's accept path alone, for this tree against another, in one run.

Each source tree (this one, and ``--against DIR``, a checkout of another revision) accepts
messages into a fresh spool with fsync on, in a child process of its own: one at a time (what a
session at one connection waits for) and 20 at once (group commit). The trees take turns,
``--rounds`` times, so that a slow minute of a shared machine falls on both. Printed per case:
each tree's median round in ms of wall time per message, ms of process CPU per message, and the
flushes per message (``fsync`` and ``fdatasync`` calls, counted in the child), and the ratios.

    .venv/bin/python bench/spool_bench.py [--against /path/to/other/checkout] [--rounds 5]

The spool is made under ``--dir`` (default /var/tmp, a disk; /tmp may be a tmpfs whose flushes
cost nothing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs inside the child: the tree under test is first on sys.path.
_CHILD = r"""
import asyncio, json, os, sys, time
from pathlib import Path

flushes = 0
_fsync, _fdatasync = os.fsync, os.fdatasync
def counted(real):
    def flush(fd):
        global flushes
        flushes += 1
        real(fd)
    return flush
os.fsync, os.fdatasync = counted(_fsync), counted(_fdatasync)

from edgeward.queue import MessageRecord, RecipientRecord, Spool

root, count, parallel = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
body = (b"From: a@bench.test\r\nTo: b@bench.test\r\nSubject: bench\r\nMessage-ID: <1@bench.test>\r\n\r\n"
        + b"X" * 78 + b"\r\n") * 25

async def main():
    spool = Spool(root, fsync=True)
    spool.recover()
    async def one():
        rec = MessageRecord(spool.new_id(), "a@bench.test", (RecipientRecord("b@bench.test"),),
                            time.time(), len(body))
        await spool.accept(rec, body)
    await one()  # the worker threads start
    global flushes
    flushes = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count // parallel):
        await asyncio.gather(*(one() for _ in range(parallel)))
    n = count // parallel * parallel
    print(json.dumps({"wall_ms": (time.perf_counter() - wall) * 1000 / n,
                      "cpu_ms": (time.process_time() - cpu) * 1000 / n, "flushes": flushes / n}))

asyncio.run(main())
"""

CASES = {"1 at a time": 1, "20 at once": 20}
FIGURES = ("wall_ms", "cpu_ms", "flushes")


def run_tree(tree: Path, workdir: Path, count: int, parallel: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=workdir) as spool_dir:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(Path(spool_dir) / "queue"), str(count), str(parallel)],
            capture_output=True, text=True, check=False,
            env={"PYTHONPATH": str(tree / "src"), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{tree}: the spool run failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--rounds", type=int, default=5, help="turns each tree takes (default 5)")
    parser.add_argument("--messages", type=int, default=400, help="messages per case and round (default 400)")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="where the spools are made")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    trees = {"this tree": ROOT}
    if args.against is not None:
        trees["other"] = args.against.resolve()
    runs: dict[str, dict[str, list[dict[str, float]]]] = {c: {t: [] for t in trees} for c in CASES}
    for r in range(args.rounds):
        for case, parallel in CASES.items():
            for name, tree in trees.items():
                runs[case][name].append(run_tree(tree, args.dir, args.messages, parallel))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    summary: dict[str, dict[str, dict[str, float]]] = {}
    header = f"{'case':<12} {'tree':<10} {'wall ms/msg':>12} {'CPU ms/msg':>11} {'flushes/msg':>12}"
    print(header)
    print("-" * len(header))
    for case in CASES:
        summary[case] = {}
        for name in trees:
            med = {k: statistics.median(x[k] for x in runs[case][name]) for k in FIGURES}
            summary[case][name] = med
            figures = f"{med['wall_ms']:>12.3f} {med['cpu_ms']:>11.3f} {med['flushes']:>12.2f}"
            print(f"{case:<12} {name:<10} {figures}")
        if len(trees) == 2:
            new, old = summary[case]["this tree"], summary[case]["other"]
            print(
                f"{case:<12} {'ratio':<10} {new['wall_ms'] / old['wall_ms']:>12.2f}"
                f" {new['cpu_ms'] / old['cpu_ms']:>11.2f} {new['flushes'] / old['flushes']:>12.2f}"
            )
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
