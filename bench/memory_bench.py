"""Memory benchmark: RSS of a real ``edgeward serve`` with large messages and many idle sessions.

The gateway is what ``edgeward init`` writes for a loopback relay to one smart host (Postfix's
``smtp-sink``), started the way ``bench/smtp_relay_bench.py`` starts it (content filter on, fsync
on, SPF and DMARC off). Loopback clients land on init's ``relay`` connector; for the idle case
only that connector's limits are raised (see ``IDLE_CONNECTOR``). It prints:

1. idle: resident memory of every gateway process (supervisor, receivers, delivery, children),
   summed two ways from ``/proc/PID/smaps_rollup``: RSS (pages resident, shared ones counted in
   every process) and PSS (shared pages split between the processes that map them).
2. one large message (``--large-size``, 10 MB): the peak RSS rise over idle of the receiving
   process while the message is received, checked, spooled and committed, and its RSS just after
   the sink has it. The peak is the kernel's high-water mark (``VmHWM``, reset through
   ``/proc/PID/clear_refs`` before the case), cross-checked by sampling ``smaps_rollup`` every
   ``--sample-ms``. Goal: < 2 MB. The message is sent ``--large-repeat`` times (2), one case
   each: the first large message after start also pays what the process does once (the worker
   threads its checks run in, their allocator arenas), the later ones show the steady state.
3. ``--concurrent`` messages of ``--concurrent-size`` (10 x 5 MB) at once: the same peak rise.
   Goal: < 20 MB.
4. ``--idle-sessions`` (10,000) sessions that read the banner and stay silent, from loopback
   addresses 127.0.K.J (``--idle-addresses`` of them, so per-address and per-/24 limits are not
   what is measured); then the total RSS and PSS over all processes, the rise per idle session,
   and a normal client's message sent meanwhile (seconds from connect to its 250). Goal: total
   < 300 MB.

The idle-session case runs right after the idle baseline, before the message cases, so what
large messages leave behind in the heap does not count against it. "The receiving process" is
the receiving process (``serve --role receive``, or ``serve`` itself with one receiver) whose
high-water mark rose most in the case; the rise of every other process (delivery reads the
message too) is printed beside it. Run as root from the repository root
(the gateway drops to its service user; the open-files limit is raised to the hard limit)::

    .venv/bin/python bench/memory_bench.py [--json memory.json]
    .venv/bin/python bench/memory_bench.py --idle-sessions 2000 --large-size 5000000

It exits non-zero only when something failed (the gateway did not start, a message was refused
or did not reach the sink), never because a goal was missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import smtplib
import string
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from relay.edgeward import EdgewardRelay
from relay.procs import BenchError, process_tree
from relay.sink import Sink

MB = 1_000_000
# Settings of init's "relay" connector raised for the idle case, and why: 10,000 sessions need
# max_connections above 10,000 / stress_threshold (0.8), else the connector is under stress and
# shortens the idle timeout to stress_idle_timeout; the opening of 10,000 sessions takes longer
# than the default idle timeout of 60 s on a busy machine (and idle_timeout may not exceed
# connection_timeout).
IDLE_CONNECTOR = {
    "max_connections": 20000,
    "connection_timeout": 900,
    "idle_timeout": 600,
    "stress_idle_timeout": 600,
}


@dataclass
class ProcMem:
    pid: int
    name: str
    rss_kib: int
    pss_kib: int


@dataclass
class Case:
    name: str
    bytes_sent: int = 0
    seconds: float = 0.0
    receiver_pid: int = 0
    receiver_idle_rss_kib: int = 0
    receiver_peak_rise_kib: int = 0  # VmHWM - RSS before
    receiver_sampled_peak_rise_kib: int = 0  # max sampled smaps_rollup Rss - RSS before
    receiver_after_rise_kib: int = 0  # RSS once the sink had every message
    # Peak rise (VmHWM) of every gateway process, the delivery process's included.
    peak_rise_kib: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    goal_kib: int = 0


@dataclass
class IdleCase:
    sessions: int = 0
    addresses: int = 0
    held: int = 0
    failed: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    open_seconds: float = 0.0
    total_rss_kib: int = 0
    total_pss_kib: int = 0
    per_session_rss_kib: float = 0.0
    per_session_pss_kib: float = 0.0
    normal_reply: str = ""
    normal_seconds: float = 0.0
    processes: list[ProcMem] = field(default_factory=list)
    connector: dict[str, int] = field(default_factory=lambda: dict(IDLE_CONNECTOR))


@dataclass
class Results:
    idle_total_rss_kib: int = 0
    idle_total_pss_kib: int = 0
    idle_processes: list[ProcMem] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)
    idle_sessions: IdleCase | None = None
    error: str | None = None


def rollup(pid: int) -> tuple[int, int]:
    """(Rss, Pss) of one process in KiB from /proc/PID/smaps_rollup; (0, 0) once it is gone."""
    rss = pss = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def status_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def label(pid: int, name: str) -> str:
    """The command name and the serve role from the command line (receive, deliver), if any."""
    with contextlib.suppress(OSError):
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"--role" in words[:-1]:
            return f"{name} ({words[words.index(b'--role') + 1].decode(errors='replace')})"
        if b"serve" in words:
            return f"{name} (serve)"
    return name


def snapshot(root: int) -> list[ProcMem]:
    tree = sorted(process_tree(root).items())
    return [ProcMem(pid, label(pid, name), *rollup(pid)) for pid, name in tree]


def reset_peaks(pids: Iterator[int]) -> None:
    """Reset each process's VmHWM to its current RSS (clear_refs 5, Linux 4.0+, root)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


class Sampler:
    """Max smaps_rollup Rss of every given process, read every ``interval`` seconds in a thread."""

    def __init__(self, pids: list[int], interval: float) -> None:
        self.peak = dict.fromkeys(pids, 0)
        self.samples = 0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.peak:
                self.peak[pid] = max(self.peak[pid], rollup(pid)[0])
            self.samples += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_body(size: int, seed: int) -> bytes:
    """A plain-text message of ``size`` bytes: headers, then 76-character lines of random words."""
    rnd = random.Random(seed)
    words = ["".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(2, 9))) for _ in range(2000)]
    head = (
        f"From: <load@client.test>\r\nTo: <sink@bench.test>\r\nSubject: memory bench {seed}\r\n"
        f"Message-ID: <mem{seed}.{time.time_ns()}@client.test>\r\n\r\n"
    ).encode()
    lines: list[bytes] = []
    total = len(head)
    while total < size:
        line = " ".join(rnd.choices(words, k=12))[:76].encode() + b"\r\n"
        lines.append(line)
        total += len(line)
    return (head + b"".join(lines))[:size]


def send(port: int, body: bytes, source: str = "127.0.0.1") -> str:
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=300) as c:
        c.ehlo("client.test")
        c.mail("load@client.test", [f"SIZE={len(body)}"])
        c.rcpt("sink@bench.test")
        code, text = c.data(body)
        return f"{code} {text.decode(errors='replace')}"


def message_case(
    name: str, root: int, port: int, sink: Sink, size: int, count: int, goal_kib: int,
    args: argparse.Namespace,
) -> Case:  # fmt: skip
    case = Case(name, bytes_sent=size * count, goal_kib=goal_kib)
    bodies = [make_body(size, seed) for seed in range(count)]
    time.sleep(1.0)  # let the gateway settle after the previous case
    pids = list(process_tree(root))
    before = {pid: rollup(pid)[0] for pid in pids}
    base = sink.count
    reset_peaks(iter(pids))
    started = time.monotonic()
    replies: list[str] = [""] * count
    with Sampler(pids, args.sample_ms / 1000.0) as sampler:

        def one(i: int) -> None:
            try:
                replies[i] = send(port, bodies[i])
            except (smtplib.SMTPException, OSError) as exc:
                replies[i] = f"failed: {exc}"

        threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sink.wait_for(base + count, args.run_timeout)
    case.seconds = round(time.monotonic() - started, 2)
    bad = [r for r in replies if not r.startswith("250")]
    if bad:
        raise BenchError(f"{name}: {len(bad)} of {count} messages not accepted: {bad[0]}")
    rises = {pid: status_kib(pid, "VmHWM") - before[pid] for pid in pids}
    labels = {pid: label(pid, name) for pid, name in process_tree(root).items()}
    receivers = [p for p in pids if "(receive)" in labels.get(p, "")]
    receivers = receivers or [p for p in pids if "(serve)" in labels.get(p, "")] or pids
    receiver = max(receivers, key=lambda p: rises[p])
    case.peak_rise_kib = {f"{pid} {labels.get(pid, '?')}": rise for pid, rise in rises.items()}
    case.receiver_pid = receiver
    case.receiver_idle_rss_kib = before[receiver]
    case.receiver_peak_rise_kib = rises[receiver]
    case.receiver_sampled_peak_rise_kib = sampler.peak[receiver] - before[receiver]
    case.receiver_after_rise_kib = rollup(receiver)[0] - before[receiver]
    case.samples = sampler.samples
    return case


class IdleCrowd:
    """Sessions that read the banner and then say nothing."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.writers: list[asyncio.StreamWriter] = []
        self.failed = 0
        self.refused: Counter[str] = Counter()

    async def open_all(self, count: int, addresses: int, parallel: int = 200) -> None:
        gate = asyncio.Semaphore(parallel)
        # One address per /24 first, so the per-network limit (200 per /24) is not reached either.
        sources = [f"127.0.{1 + i % 250}.{1 + i // 250}" for i in range(addresses)]

        async def one(i: int) -> None:
            async with gate:
                await self._open(sources[i % addresses])

        await asyncio.gather(*(one(i) for i in range(count)))

    async def _open(self, source: str) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0)), 60
            )
            first = await asyncio.wait_for(reader.readline(), 60)
        except (OSError, TimeoutError):
            self.failed += 1
            return
        if not first.startswith(b"220"):
            self.refused[first[:9].decode("ascii", "replace")] += 1
            writer.transport.abort()
            return
        self.writers.append(writer)

    def held(self) -> int:
        return sum(1 for w in self.writers if not w.transport.is_closing())

    def close(self) -> None:
        for writer in self.writers:
            writer.transport.abort()


async def idle_case(root: int, port: int, idle_rss: int, idle_pss: int, args: argparse.Namespace) -> IdleCase:
    case = IdleCase(sessions=args.idle_sessions, addresses=args.idle_addresses)
    crowd = IdleCrowd(port)
    try:
        started = time.monotonic()
        await crowd.open_all(args.idle_sessions, args.idle_addresses)
        case.open_seconds = round(time.monotonic() - started, 2)
        await asyncio.sleep(2.0)  # let the sessions settle into their idle wait
        case.held = crowd.held()
        case.failed = crowd.failed
        case.refused = dict(crowd.refused)
        case.processes = snapshot(root)
        case.total_rss_kib = sum(p.rss_kib for p in case.processes)
        case.total_pss_kib = sum(p.pss_kib for p in case.processes)
        if case.held:
            case.per_session_rss_kib = round((case.total_rss_kib - idle_rss) / case.held, 2)
            case.per_session_pss_kib = round((case.total_pss_kib - idle_pss) / case.held, 2)
        t0 = time.monotonic()
        try:
            case.normal_reply = await asyncio.to_thread(send, port, make_body(2000, 99), "127.0.250.250")
        except (smtplib.SMTPException, OSError) as exc:
            case.normal_reply = f"failed: {exc}"
        case.normal_seconds = round(time.monotonic() - t0, 3)
    finally:
        crowd.close()
        await asyncio.sleep(0.1)
    return case


class MemoryRelay(EdgewardRelay):
    """The relay benchmark's Edgeward with the relay connector's limits raised (IDLE_CONNECTOR)."""

    def setup(self) -> None:
        super().setup()
        text = self.config_file.read_text()
        marker = 'name = "relay"\n'
        if marker not in text:
            raise BenchError("init's configuration has no relay connector to raise the limits of")
        extra = "".join(f"{k} = {v}\n" for k, v in IDLE_CONNECTOR.items())
        self.config_file.write_text(text.replace(marker, marker + extra, 1))


def run(args: argparse.Namespace, workdir: Path) -> Results:
    results = Results()
    sink = Sink(workdir)
    relay = MemoryRelay(workdir, sink.port, content_filter=not args.no_content_filter)
    sink.start()
    try:
        relay.start()
        root = relay.root_pid
        assert root is not None
        send(relay.port, make_body(2000, 7))  # warm up: first message pays for imports and forks
        sink.wait_for(1, args.run_timeout)
        time.sleep(2.0)
        results.idle_processes = snapshot(root)
        results.idle_total_rss_kib = sum(p.rss_kib for p in results.idle_processes)
        results.idle_total_pss_kib = sum(p.pss_kib for p in results.idle_processes)
        if args.idle_sessions:
            results.idle_sessions = asyncio.run(
                idle_case(root, relay.port, results.idle_total_rss_kib, results.idle_total_pss_kib, args)
            )
        for n in range(args.large_repeat if args.large_size else 0):
            # The first large message after start also pays one-time costs (the worker threads
            # its checks run in, and their allocator arenas); later ones show the steady state.
            name = "one large message" + (f" (#{n + 1})" if args.large_repeat > 1 else "")
            results.cases.append(message_case(name, root, relay.port, sink, args.large_size, 1, 2000, args))
        if args.concurrent:
            results.cases.append(
                message_case(
                    f"{args.concurrent} concurrent messages",
                    root,
                    relay.port,
                    sink,
                    args.concurrent_size,
                    args.concurrent,
                    20000,
                    args,
                )
            )
    except BenchError as exc:
        results.error = str(exc)
    finally:
        relay.stop()
        sink.stop()
    return results


def mb(kib: float) -> str:
    """Decimal megabytes, the unit the goals are stated in (the kernel counts KiB)."""
    return f"{kib * 1024 / MB:.1f} MB"


def report(r: Results) -> None:
    print("idle gateway (smaps_rollup of every process):")
    for p in r.idle_processes:
        print(f"  {p.pid:>7} {p.name:<32} RSS {mb(p.rss_kib):>9}  PSS {mb(p.pss_kib):>9}")
    print(f"  total RSS {mb(r.idle_total_rss_kib)}, total PSS {mb(r.idle_total_pss_kib)}")
    for c in r.cases:
        verdict = "meets" if c.receiver_peak_rise_kib < c.goal_kib * 1000 / 1024 else "misses"
        print(
            f"{c.name} ({c.bytes_sent / MB:.1f} MB in {c.seconds:.2f} s): receiving process {c.receiver_pid}"
            f" idle RSS {mb(c.receiver_idle_rss_kib)}, peak rise {mb(c.receiver_peak_rise_kib)} (VmHWM;"
            f" sampled {mb(c.receiver_sampled_peak_rise_kib)} over {c.samples} samples), just after"
            f" {mb(c.receiver_after_rise_kib)}; goal < {c.goal_kib / 1000:.0f} MB: {verdict}"
        )
        rises = ", ".join(f"{k} {mb(v)}" for k, v in c.peak_rise_kib.items())
        print(f"  peak rise of every process: {rises}")
    i = r.idle_sessions
    if i is not None:
        print(
            f"{i.sessions} idle sessions from {i.addresses} addresses (opened in {i.open_seconds:.1f} s):"
            f" {i.held} held, {i.failed} failed, refused {i.refused or 0};"
            f" total RSS {mb(i.total_rss_kib)}, total PSS"
            f" {mb(i.total_pss_kib)}; per session {i.per_session_rss_kib:.1f} KiB RSS,"
            f" {i.per_session_pss_kib:.1f} KiB PSS; goal total < 300 MB:"
            f" {'meets' if i.total_rss_kib < 300 * MB / 1024 else 'misses'}"
        )
        for p in i.processes:
            print(f"  {p.pid:>7} {p.name:<32} RSS {mb(p.rss_kib):>9}  PSS {mb(p.pss_kib):>9}")
        print(f"  normal client meanwhile: {i.normal_reply.strip()[:80]} in {i.normal_seconds:.3f} s")
    if r.error:
        print(f"ERROR: {r.error}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--large-size", type=int, default=10 * MB, help="bytes of the single message (0: skip)")
    ap.add_argument(
        "--large-repeat", type=int, default=2, help="times the single large message is sent, one case each"
    )
    ap.add_argument("--concurrent", type=int, default=10, help="concurrent messages (0: skip)")
    ap.add_argument("--concurrent-size", type=int, default=5 * MB, help="bytes of each concurrent message")
    ap.add_argument("--idle-sessions", type=int, default=10_000, help="idle sessions to hold (0: skip)")
    ap.add_argument("--idle-addresses", type=int, default=200, help="loopback source addresses they use")
    ap.add_argument(
        "--no-content-filter", action="store_true", help="[agents.content_filter] off, to see its share"
    )
    ap.add_argument("--sample-ms", type=float, default=5.0, help="smaps_rollup sampling interval")
    ap.add_argument("--run-timeout", type=float, default=300.0, help="seconds allowed for a delivery")
    ap.add_argument("--workdir", type=Path, help="parent of the temporary folder (default /var/tmp)")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if args.idle_addresses < 1 or args.idle_addresses > 250 * 250:
        ap.error("--idle-addresses must be between 1 and 62500")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("error: run as root (clear_refs, the service user, the open-files limit)", file=sys.stderr)
        return 2
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.idle_sessions * 2 + 1000  # both ends of every session run on this host
    if hard < need:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            hard = need
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the gateway too
    workdir = Path(tempfile.mkdtemp(prefix="edgeward-memory-", dir=args.workdir or "/var/tmp"))
    try:
        results = run(args, workdir)
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(asdict(results), indent=2))
    return 1 if results.error else 0


if __name__ == "__main__":
    sys.exit(main())
