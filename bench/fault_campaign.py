"""The fault campaign: many kill -9 cycles under load, and a table of what survived.

Runs ``edgeward serve`` from this checkout against Postfix's smtp-sink and, for each kind of
kill, ``--cycles`` kill -9s at random moments while six clients send without pause:

- ``whole``: the receiving process and the delivery process at once (the process group),
  then ``edgeward serve`` again;
- ``delivery``: the delivery process alone, which the receiving process starts again.

After the last cycle the load stops and the queue drains into the sink. Every message
answered ``250`` must arrive (``lost`` must be 0); a message delivered twice (a kill between
the sink's ``250`` and the spool's removal) is counted as a duplicate. The table goes to
stdout, and with ``--markdown FILE`` into a Markdown file with the machine and the date.

    python bench/fault_campaign.py                       # 20 + 20 cycles, a few minutes
    python bench/fault_campaign.py --cycles 5 --kinds whole --seed 7

Run as root (the gateway drops to its ``edgeward`` user, smtp-sink to ``nobody``). Exits 1 if
any acknowledged message was not delivered (lost, or still in the spool once the drain stalled).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]
# The gateway runs as a child process and must import this checkout, like the campaign itself.
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])

from tests.e2e.harness import SmtpSink, free_port, shared_tmpdir  # noqa: E402
from tests.faults.kit import CampaignResult, run_kills  # noqa: E402


def _machine() -> str:
    uname = " ".join(platform.uname())
    return f"`{uname}`, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def _table(results: list[CampaignResult]) -> list[str]:
    lines = [
        "| kill | cycles | acknowledged (250) | delivered | still queued | lost | duplicates |"
        " refused replies | restart s (median / max) | drain s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        restarts = [c.restart_seconds for c in r.cycles]
        refused = ", ".join(f"{k} x{v}" for k, v in sorted(r.refused.items())) or "none"
        queued = ", ".join(f"{v} in {k}/" for k, v in sorted(r.undelivered.items())) or "0"
        lines.append(
            f"| {r.kind} | {len(r.cycles)} | {r.acked} | {r.delivered} | {queued} | {len(r.lost)} |"
            f" {r.duplicates} | {refused} | {statistics.median(restarts):.2f} / {max(restarts):.2f} |"
            f" {r.drain_seconds:.1f} |"
        )
    return lines


def _cycles(results: list[CampaignResult]) -> list[str]:
    lines = ["| kill | cycle | acknowledged before the kill | restart s |", "|---|---|---|---|"]
    for r in results:
        lines += [
            f"| {r.kind} | {c.cycle} | {c.acked_before_kill} | {c.restart_seconds:.2f} |" for c in r.cycles
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20, help="kill -9 cycles per kind (default 20)")
    parser.add_argument("--kinds", default="whole,delivery", help="whole, delivery or both (default)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the kill moments")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this Markdown file")
    parser.add_argument("--per-cycle", action="store_true", help="print every cycle, not only totals")
    args = parser.parse_args(argv)
    if not Path(shutil.which("smtp-sink") or "/usr/sbin/smtp-sink").exists():
        print("smtp-sink (Debian's postfix) is needed: scripts/bench-deps.sh installs it", file=sys.stderr)
        return 2
    started = datetime.datetime.now(datetime.UTC)
    results: list[CampaignResult] = []
    for n, kind in enumerate(k.strip() for k in args.kinds.split(",")):
        root = shared_tmpdir(f"edgeward-campaign-{kind}-")
        sink = SmtpSink(root).start()
        try:
            print(f"{kind}: {args.cycles} kill -9 cycles ...", file=sys.stderr, flush=True)
            results.append(
                run_kills(root, free_port(), sink, kind=kind, cycles=args.cycles, seed=args.seed + n)
            )
        finally:
            sink.stop()
            shutil.rmtree(root, ignore_errors=True)
    finished = datetime.datetime.now(datetime.UTC)
    table = _table(results)
    print("\n".join(table))
    if args.per_cycle:
        print("\n".join(["", *_cycles(results)]))
    for r in results:
        if r.lost:
            print(f"LOST ({r.kind}): {sorted(r.lost)[:20]}", file=sys.stderr)
    if args.markdown is not None:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        text = [
            f"Run {started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC on {_machine()}, commit {commit},",
            f"command `python bench/fault_campaign.py --cycles {args.cycles} --kinds {args.kinds}"
            f" --seed {args.seed}`.",
            "",
            *table,
            "",
            *_cycles(results),
            "",
        ]
        args.markdown.write_text("\n".join(text))
    return 1 if any(r.lost or r.undelivered for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
