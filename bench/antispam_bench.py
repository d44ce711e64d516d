"""Anti-spam benchmark: Edgeward against Postfix + postscreen + policyd-spf + OpenDKIM + OpenDMARC.

Both stacks run in one run, in a private network namespace whose 127.0.0.1:53 is unbound in
front of nsd (``antispam.dns``): DNSBL zones, the sender's SPF, DKIM key and DMARC p=reject.
The load generator sends DKIM-signed 2 KB messages over 20 parallel sessions, each from its own
client address, a new connection per message; each stack relays to its own smtp-sink, which
dumps every message so the benchmark can check every one was checked (``antispam.verify``).

Reported per stack: messages/s (end to end: until the sink has the last message), p50/p99
latency per message (client side, connect to the 250 after DATA), CPU ms per message of all
the stack's processes, and the Edgeward/Postfix ratios. Exits non-zero when something broke or
a stack did not check, never because of a ratio. Run as root; see bench/README-antispam.md.

    python bench/antispam_bench.py [--quick] [--messages N] [--repeat R] [--json out.json]
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
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from antispam import dns, mail, netns, verify
from antispam.edgeward_stack import EdgewardStack, use_tree_sources
from antispam.postfix_stack import PostfixStack
from antispam.report import PassResult, by_process, own_ticks, paired, print_table, summarise
from relay.load import percentile
from relay.procs import BenchError, cpu_seconds, kill_processes_in
from relay.sink import Sink

GOAL_RATIO = 1.0
VARIANTS = 20


class Stack:
    """A stack under test with its own sink; ``impl`` is a PostfixStack or EdgewardStack."""

    def __init__(self, impl: PostfixStack | EdgewardStack, sink: Sink) -> None:
        self.impl = impl
        self.sink = sink
        self.name = impl.name

    @property
    def dump_dir(self) -> Path:
        assert self.sink.dump_dir is not None
        return self.sink.dump_dir


def sources(sessions: int) -> list[str]:
    """One client address per session, inside the SPF-pass range and on no DNSBL."""
    return [f"127.0.1.{n}" for n in range(1, sessions + 1)]


def send_and_wait(
    stack: Stack, args: argparse.Namespace, n: int, seq: int, variants: list[mail.Variant]
) -> tuple[mail.LoadResult, float, float]:
    """Send ``n`` messages; return the load's result, its start and the time the sink had them all."""
    base = stack.sink.count
    start = time.monotonic()
    result = mail.run_load(stack.impl.port, sources(args.sessions), n, variants, seq, args.run_timeout)
    last = stack.sink.wait_for(base + n, args.run_timeout)
    return result, start, last


def check_with_probes(stack: Stack, args: argparse.Namespace, variants: list[mail.Variant]) -> list[str]:
    forged = (
        f"From: CEO <ceo@{dns.FORGED_DOMAIN}>\r\nTo: <{mail.RECIPIENT}>\r\nSubject: wire transfer\r\n"
        f"Message-ID: <probe.dmarc@client.{dns.SENDER_DOMAIN}>\r\n\r\n"
    ).encode() + mail.body_text(1)
    items = verify.probes(variants[0], forged, stack.name, args.greet_pause)
    base = stack.sink.count
    outcomes = verify.run_probes(stack.impl.port, stack.name, items)
    delivered = sum(1 for p, code, _ in outcomes if code == 250)
    if delivered:
        stack.sink.wait_for(base + delivered, args.run_timeout)
    time.sleep(0.3)  # smtp-sink writes its dump as the message arrives; let the last one finish
    fields = [verify.header_fields(p.read_bytes()) for p in sorted(stack.dump_dir.iterdir()) if p.is_file()]
    for p in stack.dump_dir.iterdir():
        p.unlink()
    agent_log = stack.impl.dir / "log" / "agent.log" if stack.name == "edgeward" else None
    return verify.judge_probes(stack.name, outcomes, fields, agent_log)


def measure(
    stack: Stack,
    args: argparse.Namespace,
    rep: int,
    seq: int,
    variants: list[mail.Variant],
    dns_pids: list[int],
) -> PassResult:
    n = args.messages
    maillog = getattr(stack.impl, "log_file", None)
    passes_before = verify.postscreen_passes(maillog) if maillog else 0
    new_before = verify.postscreen_passes(maillog, "NEW") if maillog else 0
    roots = stack.impl.pids()
    ticks0 = own_ticks(roots)
    cpu0 = stack.impl.cpu_seconds()
    dns0 = sum(cpu_seconds(p) for p in dns_pids)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    result, start, last = send_and_wait(stack, args, n, seq, variants)
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu1 = stack.impl.cpu_seconds()
    ticks1 = own_ticks(roots)
    dns1 = sum(cpu_seconds(p) for p in dns_pids)
    time.sleep(0.3)
    verify.check_dump(stack.dump_dir, stack.name, n)
    passes = new = None
    if maillog:
        passes = verify.postscreen_passes(maillog) - passes_before
        new = verify.postscreen_passes(maillog, "NEW") - new_before
        if passes < n:
            raise BenchError(f"postfix: postscreen logged {passes} PASS lines for {n} connections")
    client = (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)
    lat = result.latencies
    return PassResult(
        stack.name, rep, n,
        msgs_per_s=n / (last - start),
        accept_msgs_per_s=n / result.elapsed,
        p50_ms=percentile(lat, 50) * 1000.0,
        p99_ms=percentile(lat, 99) * 1000.0,
        cpu_ms_per_msg=(cpu1 - cpu0) * 1000.0 / n,
        dns_cpu_ms_per_msg=(dns1 - dns0) * 1000.0 / n,
        client_cpu_ms_per_msg=client * 1000.0 / n,
        postscreen_passes=passes,
        postscreen_passes_new=new,
        cpu_ms_per_msg_by_process=by_process(ticks0, ticks1, cpu1 - cpu0, n),
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.2f} (the load generator shares them)")
    workdir = Path(tempfile.mkdtemp(prefix="edgeward-antispam-bench.", dir=args.workdir or Path("/var/tmp")))
    workdir.chmod(0o755)
    report: dict[str, object] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "loadavg_start": load},
        "settings": {
            "messages": args.messages, "warmup": args.warmup, "sessions": args.sessions,
            "repeat": args.repeat, "body_bytes": mail.BODY_SIZE, "greet_pause": args.greet_pause,
            "receivers": args.receivers or "auto",
            "connection_per_message": True, "argv": args.argv,
        },
    }  # fmt: skip
    dnsd = dns.Dns(workdir / "dns")
    stacks: list[Stack] = []
    runs: list[PassResult] = []
    probes: dict[str, list[str]] = {}
    report["probes"] = probes
    try:
        key_pem, record = mail.rsa_key()
        variants = mail.make_variants(key_pem, VARIANTS)
        dnsd.start(dns.zones(record))
        print(f"nsd on 127.0.0.1:{dnsd.nsd_port}, unbound on 127.0.0.1:53 (namespace {args.netns})")
        for name in args.stacks:
            sink = Sink(workdir, dump_dir=workdir / f"dump-{name}", name=f"sink-{name}")
            sink.start()
            impl: PostfixStack | EdgewardStack
            if name == "postfix":
                impl = PostfixStack(workdir, sink.port)
            else:
                cmd = shlex.split(args.edgeward_cmd) if args.edgeward_cmd else None
                impl = EdgewardStack(workdir, sink.port, cmd, args.greet_pause, args.receivers)
            stack = Stack(impl, sink)
            stacks.append(stack)
            impl.start()
            print(
                f"{name} listening on 127.0.0.1:{impl.port}; warming up ({args.warmup} messages)", flush=True
            )
            send_and_wait(stack, args, args.warmup, 0, variants)
            time.sleep(0.3)
            verify.check_dump(stack.dump_dir, name, args.warmup)
            lines = check_with_probes(stack, args, variants)
            probes[name] = lines
            for line in lines:
                print(f"  probe {line}")
        seq = 10_000
        for rep in range(args.repeat):
            for stack in stacks:
                print(f"  [{rep + 1}/{args.repeat}] {stack.name}: {args.messages} messages ...", flush=True)
                res = measure(stack, args, rep, seq, variants, dnsd.pids)
                seq += args.messages
                runs.append(res)
                print(
                    f"    {res.msgs_per_s:.1f} msg/s, p99 {res.p99_ms:.1f} ms,"
                    f" CPU {res.cpu_ms_per_msg:.2f} ms/msg;"
                    " every message checked"
                    + (
                        f" ({res.postscreen_passes} postscreen PASS, {res.postscreen_passes_new} of them NEW)"
                        if res.postscreen_passes
                        else ""
                    )
                    + "\n    CPU ms/msg by process: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in list(res.cpu_ms_per_msg_by_process.items())[:8]),
                    flush=True,
                )
        report["stacks"] = {s.name: s.impl.describe() for s in stacks}
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C or SIGTERM must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for stack in reversed(stacks):
            stack.impl.stop()
            stack.sink.stop()
        dnsd.stop()
        for pid in kill_processes_in(workdir):
            print(f"warning: killed leftover process {pid}", file=sys.stderr)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    summary = summarise(runs)
    ratios = {}
    for key, label in (("msgs_per_s", "msg/s"), ("p99_ms", "p99"), ("cpu_ms_per_msg", "CPU/msg")):
        if each := paired(runs, key):
            ratios[label] = statistics.median(each)
    print_table(summary, ratios)
    if "msg/s" in ratios:
        verdict = "met" if ratios["msg/s"] >= GOAL_RATIO else "not met"
        print(
            f"\ngoal: Edgeward >= {GOAL_RATIO} x the Postfix stack in msg/s:"
            f" {ratios['msg/s']:.3f} ({verdict})"
        )
    report["host"]["loadavg_end"] = os.getloadavg()  # type: ignore[index]
    report["runs"] = [asdict(r) for r in runs]
    report["summary"] = summary
    report["ratios"] = ratios
    report["ratios_each_repeat"] = {k: paired(runs, k) for k in ("msgs_per_s", "p99_ms", "cpu_ms_per_msg")}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 200 messages, one repeat")
    ap.add_argument("--messages", type=int, default=2000, help="messages per measured pass (default 2000)")
    ap.add_argument("--warmup", type=int, default=100, help="warm-up messages per stack (default 100)")
    ap.add_argument("--sessions", type=int, default=20, help="parallel sessions (default 20)")
    ap.add_argument(
        "--repeat", type=int, default=3, help="measured passes per stack, alternating (default 3)"
    )
    ap.add_argument("--stacks", default="postfix,edgeward", help="which stacks (default postfix,edgeward)")
    ap.add_argument("--greet-pause", type=float, default=0.0, help="Edgeward's greet_pause (default 0)")
    ap.add_argument(
        "--receivers", default="", help="Edgeward's [server] receivers (default: its own default, auto)"
    )
    ap.add_argument("--edgeward-cmd", help="command that runs the edgeward CLI (default: this tree's)")
    ap.add_argument("--run-timeout", type=float, default=300.0, help="seconds allowed for one pass")
    ap.add_argument("--workdir", type=Path, help="parent of the temporary folder (default /var/tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (configs, logs)")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--netns", help=argparse.SUPPRESS)  # set when re-run inside the namespace
    args = ap.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.quick:
        args.messages, args.repeat = 200, 1
    args.stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    if not args.stacks or set(args.stacks) - {"postfix", "edgeward"}:
        ap.error("--stacks takes postfix and/or edgeward")
    if args.sessions < 1 or args.sessions > 200 or args.warmup < args.sessions:
        ap.error("--sessions is 1-200 and --warmup at least --sessions (every client passes once)")
    if args.json:
        args.json = args.json.resolve()
    return args


def preflight() -> None:
    if os.geteuid() != 0:
        raise BenchError("run as root (network namespace, Postfix's master, milters dropping privileges)")
    need = ["postfix", "smtp-sink", dns.NSD, dns.UNBOUND, netns.IP]
    need += ["/usr/sbin/opendkim", "/usr/sbin/opendmarc", "/usr/bin/policyd-spf"]
    missing = [b for b in need if shutil.which(b) is None]
    if missing:
        raise BenchError(f"missing {', '.join(missing)}: run scripts/install-bench-deps.sh")


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        preflight()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    use_tree_sources()
    if args.netns:
        try:
            return run(args)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping both stacks", file=sys.stderr)
            return 130
    # Outside: make the namespace, run this script again inside it, remove the namespace.
    name = f"ewbench{os.getpid()}"
    child: subprocess.Popen[bytes] | None = None
    try:
        with netns.namespace(name, dns.RESOLVER_ADDRESS):
            cmd = [
                *netns.exec_prefix(name),
                sys.executable,
                str(Path(__file__).resolve()),
                *args.argv,
                "--netns",
                name,
            ]
            child = subprocess.Popen(cmd)
            try:
                return child.wait()
            except KeyboardInterrupt:
                # Inside the namespace, before leaving it kills what is left: the run inside
                # stops both stacks and removes its work folder itself (a Ctrl-C reached it
                # too; a SIGTERM here did not).
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.wait(timeout=120)
                return 130
    except KeyboardInterrupt:
        return 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
