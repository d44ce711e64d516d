"""What the fault tests and the fault campaign share: a gateway in a child process, a load that
remembers what was acknowledged, and kill -9 cycles that check every ``250`` was delivered.

The rule checked is the gateway's promise: a message answered ``250`` is delivered, whatever
happens to the gateway afterwards. Each message carries a Message-ID the load made up, so the
downstream's dumps can be matched to acknowledgements and duplicates counted (a kill between
the downstream's ``250`` and the spool's ``finish`` may deliver a message twice; that is the
at-least-once side of the promise, counted and reported, never a loss).
"""

from __future__ import annotations

import collections
import os
import random
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeward.queue.spool import Spool
from tests.e2e.harness import NO_OUTSIDE_DNS, GatewayProcess, SmtpSink

_MESSAGE_ID = re.compile(rb"^Message-ID: <([^>]+)>", re.MULTILINE | re.IGNORECASE)


def edgeward(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeward", *args], capture_output=True, text=True, timeout=120, check=False
    )


def init_gateway(root: Path, port: int, sink_port: int, *queue: str) -> Path:
    """``edgeward init`` relaying to the sink, with fast retries; ``queue`` adds [queue] lines."""
    out = edgeward(
        "init", "--dir", str(root / "gw"), "--hostname", "mx.example.test",
        "--listen", f"127.0.0.1:{port}", "--accept-domain", "example.test",
        "--relay-from", "127.0.0.1/32", "--smart-host", f"127.0.0.1:{sink_port}",
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    (root / "gw").chmod(0o755)
    config = root / "gw" / "edgeward.toml"
    lines = ["glitch_retry_interval = 1", "transient_retry_interval = 1", "scan_interval = 0.2", *queue]
    text = config.read_text().replace("[queue]\n", "[queue]\n" + "\n".join(lines) + "\n")
    # The whole load comes from one address: the per-source rate limit would pace it, not test it.
    text = text.replace("message_rate_limit = 600", "message_rate_limit = 1000000")
    config.write_text(text + NO_OUTSIDE_DNS)
    return config


def send_one(port: int, message_id: str, timeout: float = 15.0) -> tuple[int, bytes]:
    """One message from a source without relay rights; the DATA reply (raises if cut off)."""
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=timeout) as c:
        c.ehlo("load.remote.test")
        c.mail("a@remote.test")
        c.rcpt("b@example.test")
        head = f"From: a@remote.test\r\nSubject: {message_id}\r\nMessage-ID: <{message_id}>\r\n"
        body = head + "\r\nfault injection\r\n"
        return c.data(body)


def delivered(sink: SmtpSink) -> collections.Counter[str]:
    """How often each Message-ID reached the sink."""
    found: collections.Counter[str] = collections.Counter()
    for dump in sink.messages():
        match = _MESSAGE_ID.search(dump)
        if match:
            found[match.group(1).decode()] += 1
    return found


def wait_delivered(sink: SmtpSink, wanted: set[str], stall: float) -> collections.Counter[str]:
    """Wait until every id in ``wanted`` reached the sink, or nothing new arrived for ``stall``
    seconds (a backlog drains at its own pace; only a drain that stopped is given up on)."""
    seen, progress_at = -1, time.monotonic()
    while True:
        counts = delivered(sink)
        if len(counts) != seen:
            seen, progress_at = len(counts), time.monotonic()
        if wanted <= set(counts) or time.monotonic() - progress_at > stall:
            # A dump is written while the message arrives: read again once none grows.
            time.sleep(0.2)
            return delivered(sink)
        time.sleep(0.2)


def spool_states(queue: Path) -> dict[str, str]:
    """Message-ID (without brackets) -> the queue folder it is in, for what the spool holds."""
    return {r.message_id.strip("<>"): r.state.value for r in Spool(queue).list()}


class Load:
    """Client threads sending without pause; ``acked`` holds the ids answered ``250``."""

    def __init__(self, port: int, tag: str, workers: int = 6) -> None:
        self.port = port
        self.tag = tag
        self.acked: set[str] = set()
        self.refused: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(workers)]
        self._counter = 0

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _next_id(self, worker: int) -> str:
        with self._lock:
            self._counter += 1
            return f"{self.tag}-{worker}-{self._counter}@remote.test"

    def _run(self, worker: int) -> None:
        while not self._stop.is_set():
            message_id = self._next_id(worker)
            try:
                code, text = send_one(self.port, message_id)
            except smtplib.SMTPResponseException as exc:
                code, text = exc.smtp_code, exc.smtp_error
            except (OSError, smtplib.SMTPException):
                # Cut off before the reply: never acknowledged, so the gateway owes nothing.
                time.sleep(0.02)
                continue
            with self._lock:
                if code == 250:
                    self.acked.add(message_id)
                else:
                    self.refused[f"{code} {text[:5].decode(errors='replace')}"] += 1

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def wait_for(self, more: int, timeout: float = 60.0) -> None:
        """Wait until ``more`` further messages were acknowledged."""
        target = self.count() + more
        deadline = time.monotonic() + timeout
        while self.count() < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"load stalled at {self.count()} acknowledged")
            time.sleep(0.02)


def kill_whole(gw: GatewayProcess) -> None:
    """kill -9 of the receiver and the delivery process at once (the process group)."""
    assert gw.proc is not None
    os.killpg(gw.proc.pid, signal.SIGKILL)
    gw.proc.wait(10)
    gw.proc = None


def kill_delivery(gw: GatewayProcess) -> int:
    """kill -9 of the delivery process alone; returns its pid."""
    child = gw.delivery()
    os.kill(child, signal.SIGKILL)
    return child


@dataclass
class CycleResult:
    cycle: int
    kind: str
    acked_before_kill: int
    restart_seconds: float = 0.0


@dataclass
class CampaignResult:
    kind: str
    cycles: list[CycleResult] = field(default_factory=list)
    acked: int = 0
    delivered: int = 0
    lost: set[str] = field(default_factory=set)
    # Acknowledged, not delivered, but still in the spool, by folder (hold = parked as poison).
    undelivered: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    drain_seconds: float = 0.0


def run_kills(
    workdir: Path, port: int, sink: SmtpSink, *, kind: str, cycles: int, seed: int, drain_stall: float = 30
) -> CampaignResult:
    """``cycles`` kill -9s at random moments under load, then a drain; what was lost or doubled.

    ``kind`` is ``whole`` (receiver and delivery process) or ``delivery`` (the delivery process
    alone; the receiver restarts it). The sink stays up, so deliveries are in flight at the kill.
    """
    rng = random.Random(seed)
    config = init_gateway(workdir, port, sink.port)
    result = CampaignResult(kind)
    gw = GatewayProcess(config, port).start()
    try:
        with Load(port, f"{kind}-{seed}") as load:
            for n in range(cycles):
                load.wait_for(rng.randint(5, 40))
                time.sleep(rng.uniform(0.0, 0.5))
                before = load.count()
                started = time.monotonic()
                if kind == "whole":
                    kill_whole(gw)
                    gw = GatewayProcess(config, port).start()
                else:
                    old = kill_delivery(gw)
                    while gw.children_in("deliver", timeout=0.05) in ([], [old]):
                        time.sleep(0.05)
                elapsed = time.monotonic() - started
                result.cycles.append(CycleResult(n + 1, kind, before, restart_seconds=elapsed))
            load.wait_for(5)
        result.acked = len(load.acked)
        result.refused = dict(load.refused)
        started = time.monotonic()
        counts = wait_delivered(sink, load.acked, drain_stall)
        result.drain_seconds = time.monotonic() - started
    finally:
        gw.stop()
    missing = load.acked - set(counts)
    held = spool_states(config.parent / "queue")
    result.undelivered = dict(collections.Counter(held[i] for i in missing if i in held))
    result.lost = {i for i in missing if i not in held}
    result.delivered = len(load.acked & set(counts))
    result.duplicates = sum(c - 1 for i, c in counts.items() if i in load.acked and c > 1)
    return result
