"""SMTP relay benchmark: Edgeward against a private Postfix instance, in one run.

``--relays`` may add ``floor``, a minimal durable relay in pure Python (``bench/relay/floor.py``):
what any Python relay with the same guarantees costs at least on the machine.

Both relays accept on 127.0.0.1, keep a durable (fsynced) queue and relay every message to
the same downstream, Postfix's ``smtp-sink``. For each relay, message size (2 KB, 200 KB) and
number of parallel sessions (1, 20) the benchmark makes two passes:

1. ``smtp-source`` sends N messages. Acceptance rate = N / smtp-source's run time; end-to-end
   rate = N / (time from smtp-source's start until the sink has received all N).
2. A timing asyncio client sends N messages the same way and records each transaction's
   latency (MAIL FROM written -> 250 after "." read); p50 and p99 are reported.

It prints a table per relay and the Edgeward/Postfix ratios, and writes everything as JSON
with ``--json``. It exits non-zero only when something failed (a relay that does not start, a
rejected or lost message), never because of a ratio. Run as root (Postfix's private instance
needs it); see bench/README.md.

    .venv/bin/python bench/smtp_relay_bench.py [--quick] [--json results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from relay.edgeward import EdgewardRelay
from relay.floor_relay import FloorRelay
from relay.load import percentile, run_smtp_source, timed_load
from relay.postfix import PostfixRelay
from relay.procs import BenchError, count_processes, cpu_seconds, filesystem_of, kill_processes_in, rss_bytes
from relay.sink import Sink

SMALL, LARGE = 2048, 200 * 1024
GOAL_RATIO = 1.0
GOAL_CASE = (SMALL, 20)


class Relay(Protocol):
    name: str
    port: int

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def cleanup_files(self) -> None: ...

    def describe(self) -> dict[str, object]: ...

    @property
    def root_pid(self) -> int | None: ...


@dataclass
class CaseResult:
    relay: str
    size: int
    sessions: int
    messages: int
    timed_messages: int
    e2e_msgs_per_s: float | None = None
    accept_msgs_per_s: float | None = None
    timed_client_msgs_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    cpu_ms_per_msg: float | None = None
    peak_rss_mb: float | None = None
    peak_processes: dict[str, int] = field(default_factory=dict)
    error: str | None = None


class ProcessSampler:
    """Peak number of live processes per command name in a relay's tree, and the peak resident
    memory of the whole tree, sampled in a thread.

    Postfix forks smtpd, cleanup and smtp workers on demand; the peaks show how many it really
    used on the two cores, which is what the fairness note in the README reports.
    """

    def __init__(self, root: int | None, interval: float = 0.25) -> None:
        self._root = root
        self._interval = interval
        self._stop = threading.Event()
        self.peak: Counter[str] = Counter()
        self.peak_rss = 0
        self._thread = threading.Thread(target=self._run, name="process-sampler", daemon=True)

    def _run(self) -> None:
        while self._root is not None and not self._stop.is_set():
            for name, n in count_processes(self._root).items():
                self.peak[name] = max(self.peak[name], n)
            self.peak_rss = max(self.peak_rss, rss_bytes(self._root))
            self._stop.wait(self._interval)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure_case(
    relay: Relay,
    sink: Sink,
    size: int,
    sessions: int,
    messages: int,
    timed_messages: int,
    args: argparse.Namespace,
) -> CaseResult:
    result = CaseResult(relay.name, size, sessions, messages, timed_messages)
    root = relay.root_pid
    try:
        # Pass 1: smtp-source for acceptance and end-to-end throughput (and the relay's CPU).
        base = sink.count
        cpu_before = cpu_seconds(root) if root else 0.0
        with ProcessSampler(root) as sampler:
            start = time.monotonic()
            accept_elapsed = run_smtp_source(
                relay.port, sessions, messages, size, args.reuse_connections, args.run_timeout
            )
            last = sink.wait_for(base + messages, args.run_timeout)
        cpu_after = cpu_seconds(root) if root else 0.0
        result.accept_msgs_per_s = messages / accept_elapsed
        result.e2e_msgs_per_s = messages / (last - start)
        result.cpu_ms_per_msg = (cpu_after - cpu_before) * 1000.0 / messages if root else None
        result.peak_processes = dict(sorted(sampler.peak.items()))
        result.peak_rss_mb = sampler.peak_rss / 1e6 if sampler.peak_rss else None

        # Pass 2: the timing client, then wait for the relay to drain so the next case starts idle.
        base = sink.count
        timed = timed_load(
            relay.port, sessions, timed_messages, size, args.reuse_connections, args.run_timeout
        )
        sink.wait_for(base + timed_messages, args.run_timeout)
        result.timed_client_msgs_per_s = timed_messages / timed.elapsed
        result.p50_ms = percentile(timed.latencies, 50) * 1000.0
        result.p99_ms = percentile(timed.latencies, 99) * 1000.0
        result.max_ms = max(timed.latencies) * 1000.0
    except BenchError as exc:
        result.error = str(exc)
        # Let stragglers of a failed case reach the sink now rather than count for the next one.
        sink.wait_quiet(2.0, 30.0)
    return result


def warm_up(relay: Relay, sink: Sink, args: argparse.Namespace) -> None:
    """A few messages first, so that neither relay's first case pays for start-up (forks, imports)."""
    base = sink.count
    run_smtp_source(relay.port, 5, 50, SMALL, args.reuse_connections, args.run_timeout)
    sink.wait_for(base + 50, args.run_timeout)


def cases(args: argparse.Namespace) -> Iterator[tuple[int, int, int, int]]:
    """(size, sessions, smtp-source messages, timed-client messages) in run order."""
    for size, n in ((SMALL, args.messages_small), (LARGE, args.messages_large)):
        for sessions in args.sessions:
            timed = args.timed_messages or n
            yield size, sessions, max(n, sessions), max(timed, sessions)


def size_label(size: int) -> str:
    return f"{size // 1024} KB"


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_results(results: list[CaseResult], ratios: list[dict[str, object]]) -> None:
    head = (
        f"{'relay':<9} {'size':>6} {'sess':>4} {'msgs':>5} {'e2e msg/s':>10} {'accept msg/s':>12}"
        f" {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/msg':>10} {'RSS MB':>7}  peak processes"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in results:  # RSS: peak resident memory of the relay's whole process tree
        if r.error:
            print(f"{r.relay:<9} {size_label(r.size):>6} {r.sessions:>4} {r.messages:>5}  ERROR: {r.error}")
            continue
        procs = ", ".join(f"{k}={v}" for k, v in r.peak_processes.items() if k not in ("postlogd",))
        print(
            f"{r.relay:<9} {size_label(r.size):>6} {r.sessions:>4} {r.messages:>5}"
            f" {fmt(r.e2e_msgs_per_s):>10} {fmt(r.accept_msgs_per_s):>12} {fmt(r.p50_ms, 2):>8}"
            f" {fmt(r.p99_ms, 2):>8} {fmt(r.cpu_ms_per_msg, 2):>10} {fmt(r.peak_rss_mb):>7}  {procs}"
        )
    if ratios:
        head = f"{'X / Postfix':<33} {'e2e':>6} {'accept':>7} {'p50':>6} {'p99':>6} {'CPU/msg':>7}"
        print("\n" + head + "\n" + "-" * len(head))
        for q in ratios:
            label = f"{q['relay']}, {size_label(int(str(q['size'])))}, {q['sessions']} sess"
            print(
                f"{label:<33} {fmt(_f(q['e2e']), 2):>6} {fmt(_f(q['accept']), 2):>7}"
                f" {fmt(_f(q['p50']), 2):>6} {fmt(_f(q['p99']), 2):>6} {fmt(_f(q['cpu']), 2):>7}"
            )


def _f(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def compute_ratios(results: list[CaseResult]) -> list[dict[str, object]]:
    by_key = {(r.relay, r.size, r.sessions): r for r in results if not r.error}
    ratios: list[dict[str, object]] = []
    for r in results:
        if r.relay == "postfix" or r.error or ("postfix", r.size, r.sessions) not in by_key:
            continue
        p = by_key[("postfix", r.size, r.sessions)]
        ratios.append(
            {
                "relay": r.relay,
                "size": r.size,
                "sessions": r.sessions,
                # Throughput: >1 means the relay is faster than Postfix. Latency and CPU per
                # message: >1 means it is slower or dearer.
                "e2e": _ratio(r.e2e_msgs_per_s, p.e2e_msgs_per_s),
                "accept": _ratio(r.accept_msgs_per_s, p.accept_msgs_per_s),
                "p50": _ratio(r.p50_ms, p.p50_ms),
                "p99": _ratio(r.p99_ms, p.p99_ms),
                "cpu": _ratio(r.cpu_ms_per_msg, p.cpu_ms_per_msg),
            }
        )
    return ratios


def make_relays(args: argparse.Namespace, workdir: Path, sink_port: int) -> list[Relay]:
    relays: list[Relay] = []
    for name in args.relay_names:
        if name == "postfix":
            relays.append(PostfixRelay(workdir, sink_port, args.postfix_process_limit))
        elif name == "floor":
            relays.append(FloorRelay(workdir, sink_port, args.floor_processes))
        else:
            cmd = shlex.split(args.edgeward_cmd) if args.edgeward_cmd else None
            relays.append(
                EdgewardRelay(
                    workdir,
                    sink_port,
                    cmd,
                    content_filter=name == "edgeward",
                    server=args.edgeward_server,
                    disabled=args.edgeward_disabled,
                )
            )
    return relays


def summarise(runs: list[CaseResult]) -> list[CaseResult]:
    """One row per (relay, size, sessions): the median of each number over the repeats.

    A case with any failed repeat reports that failure instead of a median of the rest.
    """
    groups: dict[tuple[str, int, int], list[CaseResult]] = {}
    for r in runs:
        groups.setdefault((r.relay, r.size, r.sessions), []).append(r)
    rows = []
    for (relay, size, sessions), group in sorted(
        groups.items(), key=lambda kv: (kv[0][0] != "postfix", kv[0])
    ):
        first = group[0]
        row = CaseResult(relay, size, sessions, first.messages, first.timed_messages)
        errors = [r.error for r in group if r.error]
        if errors:
            row.error = errors[0]
            rows.append(row)
            continue
        for name in (
            "e2e_msgs_per_s",
            "accept_msgs_per_s",
            "timed_client_msgs_per_s",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "cpu_ms_per_msg",
            "peak_rss_mb",
        ):
            values = [v for r in group if (v := getattr(r, name)) is not None]
            setattr(row, name, statistics.median(values) if values else None)
        peak: Counter[str] = Counter()
        for r in group:
            peak |= Counter(r.peak_processes)
        row.peak_processes = dict(sorted(peak.items()))
        rows.append(row)
    return rows


def paired_ratios(runs: list[CaseResult], size: int, sessions: int, relay: str = "edgeward") -> list[float]:
    """relay/Postfix end-to-end ratio of each repeat: the runs of a pair ran back to back."""
    pf = [r for r in runs if (r.relay, r.size, r.sessions) == ("postfix", size, sessions)]
    ew = [r for r in runs if (r.relay, r.size, r.sessions) == (relay, size, sessions)]
    return [
        e.e2e_msgs_per_s / p.e2e_msgs_per_s
        for p, e in zip(pf, ew, strict=False)
        if e.e2e_msgs_per_s is not None and p.e2e_msgs_per_s
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 200 x 2 KB and 20 x 200 KB messages per case"
    )
    ap.add_argument("--messages-small", type=int, default=2000, help="messages per 2 KB case (default 2000)")
    ap.add_argument("--messages-large", type=int, default=200, help="messages per 200 KB case (default 200)")
    ap.add_argument(
        "--timed-messages", type=int, default=0, help="messages per timing pass (default: same as the case)"
    )
    ap.add_argument(
        "--sessions",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 20],
        help="parallel sessions, comma separated (default 1,20)",
    )
    ap.add_argument(
        "--relays",
        default="postfix,edgeward,edgeward-nocf",
        help="which relays to run (default postfix,edgeward,edgeward-nocf: the last without content filter;"
        " floor: the minimal Python relay)",
    )
    ap.add_argument(
        "--reuse-connections",
        action="store_true",
        help="send all messages of a session over one connection (smtp-source -d); default: one per message",
    )
    ap.add_argument(
        "--run-timeout", type=float, default=300.0, help="seconds allowed for one pass (default 300)"
    )
    ap.add_argument(
        "--repeat", type=int, default=1, help="run every case this many times and report medians (default 1)"
    )
    ap.add_argument("--postfix-process-limit", type=int, default=100, help="Postfix default_process_limit")
    ap.add_argument(
        "--floor-processes",
        type=int,
        choices=(1, 2),
        default=1,
        help="floor relay: 1 = receive and deliver in one process (default), 2 = a delivery process",
    )
    ap.add_argument("--edgeward-cmd", help="command that runs the edgeward CLI (default: .venv/bin/edgeward)")
    ap.add_argument("--receivers", default="", help="Edgeward's [server] receivers (default: its default)")
    ap.add_argument(
        "--edgeward-disable",
        default="",
        metavar="AGENTS",
        help="agents to turn off in both Edgeward relays ([agents] disabled, comma-separated names as"
        " `edgeward agents list` shows them), to see what they cost",
    )
    ap.add_argument("--event-loop", default="", help="Edgeward's [server] event_loop (default: its default)")
    ap.add_argument("--workdir", type=Path, help="parent of the temporary folder (default /var/tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (configs, queues, logs)")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.quick:
        args.messages_small, args.messages_large = 200, 20
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    args.edgeward_disabled = tuple(a.strip() for a in args.edgeward_disable.split(",") if a.strip())
    args.edgeward_server = {
        k: v for k, v in (("receivers", args.receivers), ("event_loop", args.event_loop)) if v
    }
    args.relay_names = [r.strip() for r in args.relays.split(",") if r.strip()]
    unknown = set(args.relay_names) - {"postfix", "edgeward", "edgeward-nocf", "floor"}
    if unknown or not args.relay_names:
        ap.error(
            "--relays takes postfix, edgeward, edgeward-nocf, floor,"
            f" not {', '.join(sorted(unknown)) or 'nothing'}"
        )
    return args


def preflight() -> None:
    missing = [b for b in ("postfix", "postconf", "smtp-sink", "smtp-source") if shutil.which(b) is None]
    if missing:
        raise BenchError(f"missing {', '.join(missing)}: run scripts/bench-deps.sh")
    if os.geteuid() != 0:
        raise BenchError("run as root: a private Postfix instance starts its master as root")


def _terminate(signum: int, frame: object) -> None:
    # Turn SIGTERM into the same unwinding as Ctrl-C so every child and the work folder go.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    # A shell without job control starts background jobs with SIGINT ignored; restore Ctrl-C.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        preflight()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.2f}")
    if load > 0.5:
        print("warning: the machine is not idle; other processes share the cores with the relays")
    host: dict[str, object] = {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "workdir_fs": "",
        "loadavg_start": os.getloadavg(),
    }
    report: dict[str, object] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": host,
        "settings": {
            "messages_small": args.messages_small,
            "messages_large": args.messages_large,
            "timed_messages": args.timed_messages or "same as messages",
            "sessions": args.sessions,
            "reuse_connections": args.reuse_connections,
            "repeat": args.repeat,
            "pipelining": False,
            "edgeward_server": args.edgeward_server or "defaults",
            "edgeward_disabled": list(args.edgeward_disabled),
            "floor_processes": args.floor_processes,
            "argv": sys.argv[1:] if argv is None else argv,
        },
        "relays": {},
    }
    runs: list[CaseResult] = []
    # Nothing may fail between creating the work folder and the try whose finally removes it.
    workdir = Path(tempfile.mkdtemp(prefix="edgeward-relay-bench.", dir=args.workdir or Path("/var/tmp")))
    sink = Sink(workdir)
    started: list[Relay] = []
    down: dict[str, str] = {}
    try:
        # Relay daemons that drop root (Postfix's mail_owner, Edgeward's user) must traverse it.
        workdir.chmod(0o755)
        mount, fstype = filesystem_of(workdir)
        host["workdir_fs"] = fstype
        print(f"work folder {workdir} ({fstype} on {mount})")
        if fstype in ("tmpfs", "ramfs"):
            print(f"warning: {workdir} is on {fstype}: fsync costs nothing there; use --workdir on a disk")
        sink.start()
        print(f"smtp-sink on 127.0.0.1:{sink.port}")
        # Both relays stay up for the whole run and take turns case by case, so that a change
        # in the machine's background load affects both alike; an idle relay costs no CPU.
        for relay in make_relays(args, workdir, sink.port):
            try:
                started.append(relay)
                relay.start()
                print(f"{relay.name} listening on 127.0.0.1:{relay.port}; warming up", flush=True)
                warm_up(relay, sink, args)
            except BenchError as exc:
                print(f"error: {relay.name}: {exc}", file=sys.stderr)
                down[relay.name] = f"did not start: {exc}"
        for rep in range(args.repeat):
            for size, sessions, messages, timed_n in cases(args):
                for relay in started:
                    if relay.name in down:
                        runs.append(
                            CaseResult(relay.name, size, sessions, messages, timed_n, error=down[relay.name])
                        )
                        continue
                    print(
                        f"  [{rep + 1}/{args.repeat}] {relay.name}: {size_label(size)}, {sessions} sessions,"
                        f" {messages} messages ...",
                        flush=True,
                    )
                    res = measure_case(relay, sink, size, sessions, messages, timed_n, args)
                    if res.error:
                        print(f"    error: {res.error}", file=sys.stderr)
                    runs.append(res)
        relays = report["relays"]
        assert isinstance(relays, dict)
        for relay in started:
            relays[relay.name] = relay.describe()
    except KeyboardInterrupt:
        print("\ninterrupted: stopping relays and the sink", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for relay in reversed(started):
            relay.stop()
        sink.stop()
        for pid in kill_processes_in(workdir):
            print(f"warning: killed leftover process {pid}", file=sys.stderr)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    failed = any(r.error for r in runs)
    results = summarise(runs)
    host["loadavg_end"] = os.getloadavg()
    ratios = compute_ratios(results)
    print_results(results, ratios)
    goal = next(
        (q for q in ratios if (q["relay"], q["size"], q["sessions"]) == ("edgeward", *GOAL_CASE)), None
    )
    paired = paired_ratios(runs, *GOAL_CASE)
    # With repeats, judge by the median of the back-to-back pairs: a change in background load
    # between repeats moves both relays of a pair alike but skews a ratio of separate medians.
    goal_ratio = statistics.median(paired) if len(paired) > 1 else (_f(goal["e2e"]) if goal else None)
    if goal_ratio is not None:
        verdict = "met" if goal_ratio >= GOAL_RATIO else "not met"
        how = f"median of repeats {', '.join(f'{q:.2f}' for q in paired)}; " if len(paired) > 1 else ""
        print(
            f"\ngoal: Edgeward >= {GOAL_RATIO} x Postfix end-to-end on 2 KB at 20 sessions:"
            f" {goal_ratio:.3f} ({how}{verdict})"
        )
    floor_paired = paired_ratios(runs, *GOAL_CASE, relay="floor")
    if floor_paired:
        each = ", ".join(f"{q:.2f}" for q in floor_paired)
        print(
            f"floor (the Python floor) / Postfix end-to-end on 2 KB at 20 sessions:"
            f" {statistics.median(floor_paired):.3f} (each repeat {each})"
        )
    report["results"] = [asdict(r) for r in results]
    report["runs"] = [asdict(r) for r in runs]
    report["ratios"] = ratios
    report["goal"] = {
        "case": {"size": SMALL, "sessions": 20},
        "target": GOAL_RATIO,
        "ratio": goal_ratio,
        "ratio_each_repeat": paired,
        "floor_ratio_each_repeat": floor_paired,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
