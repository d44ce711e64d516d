"""Anti-virus benchmark: Edgeward (ClamAV + YARA + oletools) against amavisd-new with the same clamd.

One run starts one clamd (Debian ``clamav-daemon``, a private instance on a socket in the work
folder, with the database :mod:`edgeward.testing.clamav` builds: EICAR hash and body
signatures and ``--filler`` made-up ones), then each stack in turn, each delivering to its own
smtp-sink that dumps what it gets. Both get the same deterministic message mix
(``avstack.mail``: plain mails, a 1 MB zip, an Office file with a VBA macro, EICAR three ways)
over the same number of parallel SMTP sessions; the warm-up is checked but not timed.

Reported per stack: messages/s (end to end: every message answered and every clean one at the
sink), p50/p99 latency per message (client side, MAIL to the reply after DATA), CPU ms per
message and the peak summed RSS of the stack's own processes (the shared clamd is in neither;
its CPU is reported apart), and the Edgeward/amavis ratios. Every pass is checked: infected
messages refused naming the virus, clean ones at the sink with the stack's scan header
(``avstack.verify``); otherwise the run fails. Exits non-zero when something broke or a stack
did not scan, never because of a ratio. Run as root; see bench/README-av.md.

    python bench/av_bench.py [--quick] [--messages N] [--repeat R] [--sessions S] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

# This tree's package before any installed one: the mix and the clamd database come from it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from antispam.edgeward_stack import use_tree_sources
from avstack import mail, verify
from avstack.amavis_stack import AMAVISD, AmavisStack
from avstack.edgeward_stack import ENGINES, EdgewardStack
from avstack.measure import PeakRss
from avstack.report import PassResult, paired, print_table, ratios, summarise
from relay.load import percentile
from relay.procs import BenchError, cpu_seconds, kill_processes_in
from relay.sink import Sink

from edgeward.testing.clamav import CLAMD, start_clamd

GOAL_RATIO = 2.0
STREAM_MAX = 25 * 1024 * 1024


class Stack:
    """A stack under test with its own sink and the header its scanned mail carries."""

    def __init__(self, impl: AmavisStack | EdgewardStack, sink: Sink, header: str) -> None:
        self.impl = impl
        self.sink = sink
        self.header = header
        self.name = impl.name

    @property
    def dump_dir(self) -> Path:
        assert self.sink.dump_dir is not None
        return self.sink.dump_dir


def clean_in(seqs: range) -> int:
    return sum(1 for s in seqs if mail.kind_of(s) not in mail.INFECTED)


def send_and_check(
    stack: Stack, args: argparse.Namespace, seqs: range, mix: dict[str, mail.Message]
) -> tuple[mail.LoadResult, float, float]:
    """Send ``seqs``, wait for the sink, check every message; return the result, start and end."""
    base = stack.sink.count
    start = time.monotonic()
    result = mail.run_load(stack.impl.port, args.sessions, seqs, mix, args.run_timeout)
    last = stack.sink.wait_for(base + clean_in(seqs), args.run_timeout)
    verify.check(stack.name, stack.dump_dir, result, seqs, stack.header, ENGINES)
    return result, start, max(last, start + result.elapsed)


def measure(
    stack: Stack,
    args: argparse.Namespace,
    rep: int,
    seqs: range,
    mix: dict[str, mail.Message],
    clamd_pid: int,
) -> PassResult:
    n = len(seqs)
    assert stack.impl.root_pid is not None
    cpu0, clamd0 = stack.impl.cpu_seconds(), cpu_seconds(clamd_pid)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    with PeakRss(stack.impl.root_pid) as rss:
        result, start, last = send_and_check(stack, args, seqs, mix)
        cpu1, clamd1 = stack.impl.cpu_seconds(), cpu_seconds(clamd_pid)
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    client = (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)
    return PassResult(
        stack.name, rep, n, len(result.delivered), len(result.refused),
        msgs_per_s=n / (last - start),
        accept_msgs_per_s=n / result.elapsed,
        p50_ms=percentile(result.latencies, 50) * 1000.0,
        p99_ms=percentile(result.latencies, 99) * 1000.0,
        cpu_ms_per_msg=(cpu1 - cpu0) * 1000.0 / n,
        clamd_cpu_ms_per_msg=(clamd1 - clamd0) * 1000.0 / n,
        peak_rss_mb=rss.peak / 2**20,
        client_cpu_ms_per_msg=client * 1000.0 / n,
    )  # fmt: skip


def start_stack(name: str, args: argparse.Namespace, workdir: Path, clamd_socket: Path) -> Stack:
    sink = Sink(workdir, dump_dir=workdir / f"dump-{name}", name=f"sink-{name}")
    sink.start()
    impl: AmavisStack | EdgewardStack
    if name == "amavis":
        impl = AmavisStack(workdir, sink.port, clamd_socket, args.sessions)
        header = "X-Virus-Scanned"
    else:
        cmd = shlex.split(args.edgeward_cmd) if args.edgeward_cmd else None
        impl = EdgewardStack(workdir, sink.port, cmd, clamd_socket, STREAM_MAX, args.receivers)
        header = "X-Edgeward-AV"
    stack = Stack(impl, sink, header)
    try:
        impl.start()
    except BaseException:
        sink.stop()
        raise
    return stack


def run(args: argparse.Namespace) -> int:
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.2f} (the load generator and clamd share them)")
    workdir = Path(tempfile.mkdtemp(prefix="edgeward-av-bench.", dir=args.workdir or Path("/var/tmp")))
    workdir.chmod(0o755)
    mix = mail.build_mix(args.corpora)
    report: dict[str, object] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "loadavg_start": load},
        "settings": {
            "messages": args.messages, "warmup": args.warmup, "sessions": args.sessions,
            "repeat": args.repeat, "filler_signatures": args.filler, "mix": list(mail.MIX),
            "message_bytes": {k: len(m.body) for k, m in mix.items()}, "argv": args.argv,
        },
    }  # fmt: skip
    stacks: list[Stack] = []
    runs: list[PassResult] = []
    clamd = None
    try:
        clamd = start_clamd(workdir / "clamd", shared=True, filler=args.filler, stream_max=STREAM_MAX)
        assert clamd.proc is not None
        print(f"clamd on {clamd.socket} (pid {clamd.proc.pid}, {args.filler} filler signatures)")
        for name in args.stacks:
            stack = start_stack(name, args, workdir, clamd.socket)
            stacks.append(stack)
            print(f"{name} listening on 127.0.0.1:{stack.impl.port}; warming up ({args.warmup} messages)")
            send_and_check(stack, args, range(args.warmup), mix)
        seq = 10 * len(mail.MIX) * (1 + args.warmup // len(mail.MIX))
        for rep in range(args.repeat):
            for stack in stacks:
                print(f"  [{rep + 1}/{args.repeat}] {stack.name}: {args.messages} messages ...", flush=True)
                res = measure(stack, args, rep, range(seq, seq + args.messages), mix, clamd.proc.pid)
                seq += args.messages
                runs.append(res)
                print(
                    f"    {res.msgs_per_s:.1f} msg/s, p99 {res.p99_ms:.0f} ms, CPU {res.cpu_ms_per_msg:.1f}"
                    f" ms/msg (+ clamd {res.clamd_cpu_ms_per_msg:.1f}), peak RSS {res.peak_rss_mb:.0f} MB;"
                    f" {res.refused} infected refused, {res.delivered} clean delivered with {stack.header}",
                    flush=True,
                )
        report["stacks"] = {s.name: s.impl.describe() for s in stacks}
    except (BenchError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for stack in reversed(stacks):
            stack.impl.stop()
            stack.sink.stop()
        if clamd is not None:
            clamd.stop()
        for pid in kill_processes_in(workdir):
            print(f"warning: killed leftover process {pid}", file=sys.stderr)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    summary = summarise(runs)
    ratio = ratios(runs)
    print_table(summary, ratio)
    if "msg/s" in ratio:
        verdict = "met" if ratio["msg/s"] >= GOAL_RATIO else "not met"
        print(f"\ngoal: Edgeward >= {GOAL_RATIO} x amavis in msg/s: {ratio['msg/s']:.2f} ({verdict})")
    report["host"]["loadavg_end"] = os.getloadavg()  # type: ignore[index]
    report["runs"] = [asdict(r) for r in runs]
    report["summary"] = summary
    report["ratios"] = ratio
    report["ratios_each_repeat"] = {k: paired(runs, k) for k in ("msgs_per_s", "p99_ms", "cpu_ms_per_msg")}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cycle = len(mail.MIX)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 60 messages, 20 warm-up, one repeat")
    ap.add_argument(
        "--messages", type=int, default=1000, help=f"messages per pass, a multiple of {cycle} (default 1000)"
    )
    ap.add_argument("--receivers", default="auto", help="Edgeward's [server] receivers (default auto)")
    ap.add_argument("--warmup", type=int, default=40, help="warm-up messages per stack (default 40)")
    ap.add_argument("--sessions", type=int, default=4, help="parallel SMTP sessions (default 4)")
    ap.add_argument("--repeat", "--rounds", type=int, default=3, help="measured passes per stack (default 3)")
    ap.add_argument("--stacks", default="amavis,edgeward", help="which stacks (default amavis,edgeward)")
    ap.add_argument(
        "--filler", type=int, default=20000,
        help="made-up hash signatures in clamd's database (and a tenth as many body ones; default 20000)",
    )  # fmt: skip
    ap.add_argument("--corpora", type=Path, default=mail.default_corpora(), help="the shared corpora folder")
    ap.add_argument("--edgeward-cmd", help="command that runs the edgeward CLI (default: this tree's)")
    ap.add_argument("--run-timeout", type=float, default=600.0, help="seconds allowed for one pass")
    ap.add_argument("--workdir", type=Path, help="parent of the temporary folder (default /var/tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (configs, logs)")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.quick:
        args.messages, args.warmup, args.repeat = 60, 20, 1
    args.stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    if not args.stacks or set(args.stacks) - {"amavis", "edgeward"}:
        ap.error("--stacks takes amavis and/or edgeward")
    if args.messages < cycle or args.messages % cycle:
        ap.error(f"--messages must be a multiple of {cycle}, the length of the mix, so its proportions hold")
    if not 1 <= args.sessions <= 50 or args.warmup < 0 or args.repeat < 1:
        ap.error("--sessions is 1-50, --warmup at least 0, --repeat at least 1")
    if args.json:
        args.json = args.json.resolve()
    return args


def preflight() -> None:
    if os.geteuid() != 0:
        raise BenchError("run as root (amavisd drops to its user, smtp-sink to nobody)")
    missing = [b for b in ("smtp-sink",) if shutil.which(b) is None]
    missing += [] if CLAMD else ["clamd"]
    missing += [] if Path(AMAVISD).exists() else ["amavisd"]
    if missing:
        raise BenchError(f"missing {', '.join(missing)}: run scripts/install-bench-deps.sh")


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    use_tree_sources()
    try:
        preflight()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping both stacks", file=sys.stderr)
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
