"""Overload: many idle connections from a few addresses, and one normal client that must get through.

Starts ``edgeward serve`` on a loopback port (drop-folder delivery), opens ``--attackers``
connections from ``--addresses`` loopback source addresses (127.0.K.1, one /24 each, so the
per-network limit does not help and the per-connector limit and eviction must), holds them
idle, then sends one message from an address of its own and prints what happened:

    held      connections that got 220 and were still open when the normal client started
    refused   connections answered 421 4.3.2 at connect (a limit was reached)
    evicted   held connections later closed with 421 4.7.0 to make room
    timed out held connections closed with 421 4.4.2 (the stress idle timeout)
    normal    the normal client's reply to its message and how long the whole session took
    rss       resident memory of the receiving process, before and under the attack

It exits non-zero only when the normal client's message was not accepted. Run as root (the
gateway drops to ``edgeward``) from the repository root::

    .venv/bin/python bench/overload_bench.py                   # 10,000 connections, ~1 minute
    .venv/bin/python bench/overload_bench.py --attackers 300 --addresses 10 --max-connections 200

The open-files limit is raised to the hard limit for this process and the gateway it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

MESSAGE = (
    b"From: <a@remote.test>\r\nSubject: normal client\r\nMessage-ID: <normal@remote.test>\r\n"
    b"\r\nhello through the crowd\r\n"
)


@dataclass
class Figures:
    attackers: int = 0
    addresses: int = 0
    max_connections: int = 0
    held: int = 0
    refused: int = 0
    failed: int = 0
    evicted: int = 0
    timed_out: int = 0
    normal_reply: str = ""
    normal_seconds: float = 0.0
    rss_idle_kib: int = 0
    rss_attack_kib: int = 0
    open_seconds: float = 0.0
    other: dict[str, int] = field(default_factory=dict)


def _free_port() -> int:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in range(low - 3000 + os.getpid() % 2000, low):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def _config(root: Path, port: int, args: argparse.Namespace) -> Path:
    connector = {
        "max_connections": args.max_connections,
        "max_connections_per_source": args.per_source,
        "stress_idle_timeout": args.stress_idle_timeout,
        "idle_timeout": 300,
        "tarpit_interval": 0,
    }
    lines = [
        'accepted_domains = ["example.test"]',
        "[server]",
        'hostname = "mx.example.test"',
        f'data_dir = "{root}"',
        'user = "edgeward"',
        "shutdown_grace = 5",
        "[[receive_connectors]]",
        'name = "internet"',
        f'bindings = ["127.0.0.1:{port}"]',
        'remote_ranges = ["0.0.0.0/0"]',
        *(f"{k} = {json.dumps(v)}" for k, v in connector.items()),
        "[[send_connectors]]",
        'name = "inbound"',
        'address_spaces = ["*"]',
        'drop_dir = "drop"',
        "[agents]",
        'disabled = ["content-filter"]',
    ]
    path = root / "edgeward.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _wait_banner(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(4) == b"220 ":
                    s.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the gateway did not start")


class Attack:
    """The idle connections: opened, classified by the first line, then watched."""

    def __init__(self, port: int, figures: Figures) -> None:
        self.port = port
        self.figures = figures
        self.writers: list[asyncio.StreamWriter] = []
        self.watchers: set[asyncio.Task[None]] = set()
        self.open_now = 0

    async def open_all(self, count: int, addresses: int, parallel: int = 200) -> None:
        gate = asyncio.Semaphore(parallel)

        async def one(i: int) -> None:
            async with gate:
                await self._open(f"127.0.{1 + i % addresses}.1")

        await asyncio.gather(*(one(i) for i in range(count)))

    async def _open(self, source: str) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0)), 30
            )
            first = await asyncio.wait_for(reader.readline(), 30)
        except (OSError, TimeoutError):
            self.figures.failed += 1
            return
        self.writers.append(writer)
        if first.startswith(b"220"):
            self.open_now += 1
            task = asyncio.create_task(self._watch(reader))
            self.watchers.add(task)
            task.add_done_callback(self.watchers.discard)
        elif first.startswith(b"421 4.3.2"):
            self.figures.refused += 1
        else:
            key = first[:9].decode("ascii", "replace")
            self.figures.other[key] = self.figures.other.get(key, 0) + 1

    async def _watch(self, reader: asyncio.StreamReader) -> None:
        try:
            line = await reader.readline()
        except OSError:
            line = b""
        self.open_now -= 1
        if line.startswith(b"421 4.7.0"):
            self.figures.evicted += 1
        elif line.startswith(b"421 4.4.2"):
            self.figures.timed_out += 1

    async def close(self) -> None:
        for task in list(self.watchers):
            task.cancel()
        await asyncio.gather(*self.watchers, return_exceptions=True)
        for writer in self.writers:
            writer.transport.abort()
        await asyncio.sleep(0)


def _normal_client(port: int) -> tuple[str, float]:
    started = time.monotonic()
    try:
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.250.1", 0), timeout=60) as c:
            c.ehlo("normal.remote.test")
            c.mail("a@remote.test")
            c.rcpt("b@example.test")
            code, text = c.data(MESSAGE)
            reply = f"{code} {text.decode(errors='replace')}"
    except (smtplib.SMTPException, OSError) as exc:
        reply = f"failed: {exc}"
    return reply, time.monotonic() - started


async def _attack_and_send(port: int, gateway_pid: int, args: argparse.Namespace, figures: Figures) -> None:
    attack = Attack(port, figures)
    try:
        started = time.monotonic()
        await attack.open_all(args.attackers, args.addresses)
        figures.open_seconds = round(time.monotonic() - started, 2)
        figures.held = attack.open_now
        figures.rss_attack_kib = _rss_kib(gateway_pid)
        figures.normal_reply, seconds = await asyncio.to_thread(_normal_client, port)
        figures.normal_seconds = round(seconds, 3)
        await asyncio.sleep(0.5)  # let the evicted connection's 421 arrive
    finally:
        await attack.close()


def run(args: argparse.Namespace) -> Figures:
    """One bounded run; the gateway is stopped and its folder removed before returning."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the gateway too
    root = Path(tempfile.mkdtemp(prefix="edgeward-overload-"))
    root.chmod(0o755)
    port = _free_port()
    figures = Figures(
        attackers=args.attackers, addresses=args.addresses, max_connections=args.max_connections
    )
    log = (root / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeward", "serve", "--config", str(_config(root, port, args))],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_banner(port)
        figures.rss_idle_kib = _rss_kib(proc.pid)
        asyncio.run(_attack_and_send(port, proc.pid, args, figures))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        if args.keep:
            print(f"gateway folder kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return figures


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--attackers", type=int, default=10_000, help="idle connections to open")
    p.add_argument("--addresses", type=int, default=100, help="source addresses they come from")
    p.add_argument("--max-connections", type=int, default=5000, help="the connector's max_connections")
    p.add_argument("--per-source", type=int, default=100, help="max_connections_per_source")
    p.add_argument(
        "--stress-idle-timeout", type=float, default=300,
        help="stress_idle_timeout; the default (300) keeps the crowd in place so eviction is measured",
    )  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--keep", action="store_true", help="keep the gateway's folder and log")
    return p


def main() -> int:
    args = parser().parse_args()
    figures = run(args)
    for key, value in asdict(figures).items():
        print(f"{key:>16}: {value}")
    if args.json:
        args.json.write_text(json.dumps(asdict(figures), indent=2))
    ok = figures.normal_reply.startswith("250")
    print("normal client got through" if ok else "NORMAL CLIENT WAS REFUSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
