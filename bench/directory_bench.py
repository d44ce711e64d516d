"""Directory sync benchmark: a full sync of N entries from a private slapd, then replica lookups.

slapd (``edgeward.testing.slapd``) is loaded with N users (two addresses each) by slapadd, then
``edgeward directory sync --full`` runs as a child process over LDAPS with pages of 1,000, as
AD serves them: wall time and the child's peak RSS (``RUSAGE_CHILDREN``). An incremental sync
with nothing changed is timed the same way. Then ``DirectoryRecipients.exists`` (the
local-recipients lookup, on the event loop, the reader's change check included) is called for
M addresses, half known, half unknown, and the rate is reported. Last, a gateway (in this
process, its own event loop) takes recipients from that replica while ``--clients`` client
processes send RCPT after RCPT (100 a transaction, all known users, so no tarpit) for
``--seconds``: RCPT commands answered per second, each one a replica lookup, under SMTP load.

    python bench/directory_bench.py [--entries 100000] [--lookups 200000] [--clients 2]
        [--seconds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeward.config.directory import DirectoryConfig
from edgeward.directory.recipients import DirectoryRecipients
from edgeward.directory.replica import ReplicaReader, read_replica
from edgeward.testing.slapd import SUFFIX, SYNC_DN, SYNC_PW, Slapd, users_ldif
from edgeward.types import Address

EDGEWARD = [sys.executable, "-m", "edgeward"]


def _config(root: Path, server: Slapd) -> Path:
    pw = root / "bind.pw"
    pw.write_text(SYNC_PW)
    pw.chmod(0o600)
    path = root / "edgeward.toml"
    path.write_text(
        f"accepted_domains = ['example.org']\n[server]\ndata_dir = '{root}'\n[directory]\n"
        f"urls = ['{server.ldaps_url}']\nbase_dn = '{SUFFIX}'\nbind_dn = '{SYNC_DN}'\n"
        f"password_file = '{pw}'\nca_file = '{server.ca_file}'\nmax_delete_share = 1.0\n"
    )
    return path


def _timed_sync(config: Path, *extra: str) -> tuple[float, int]:
    """Seconds and the child's peak RSS in KiB (the largest child so far: run the big one first)."""
    started = time.perf_counter()
    done = subprocess.run(
        [*EDGEWARD, "directory", "sync", "-c", str(config), *extra], capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sync failed: {done.stdout}{done.stderr}")
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


async def _lookups(path: Path, count: int, entries: int) -> float:
    source = DirectoryRecipients(ReplicaReader(path), DirectoryConfig())
    addresses = [Address(f"u{i % entries}" if i % 2 else f"nobody{i}", "example.org") for i in range(count)]
    await source.exists(addresses[0])  # the first lookup loads the snapshot
    started = time.perf_counter()
    known = 0
    for address in addresses:
        known += await source.exists(address)
    elapsed = time.perf_counter() - started
    assert known == count // 2, known
    return count / elapsed


def _rcpt_client(port: int, entries: int, seconds: float, seed: int) -> int:
    """RCPTs answered 250 in ``seconds`` by one client (its own process)."""
    import random
    import smtplib

    rng, answered = random.Random(seed), 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        # A session takes 1,000 commands ([receive_connectors] max_commands): 8 transactions.
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.ehlo("bench.remote.test")
            for _ in range(8):
                client.mail("bench@remote.test")
                for _ in range(100):
                    code, text = client.rcpt(f"u{rng.randrange(entries)}@example.org")
                    if code != 250:
                        raise SystemExit(f"RCPT got {code} {text!r}")
                    answered += 1
                client.rset()
    return answered


def _smtp_load(root: Path, entries: int, clients: int, seconds: float) -> float:
    import socket
    import threading
    from concurrent.futures import ProcessPoolExecutor

    from edgeward.config.load import parse_config
    from edgeward.runtime import Gateway
    from edgeward.server.listener import bind_sockets

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = parse_config(
        {
            "server": {"hostname": "mx.example.org", "data_dir": str(root)},
            "accepted_domains": ["example.org"],
            "receive_connectors": [
                {"name": "internet", "bindings": [f"127.0.0.1:{port}"], "tarpit_interval": 0}
            ],
            "send_connectors": [{"name": "out", "address_spaces": ["*"], "drop_dir": "drop"}],
            "agents": {"local_recipients": {"enabled": True, "source": "directory"}},
            "spf": {"enabled": False},
            "dmarc": {"enabled": False},
        },
        base=root,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sockets = bind_sockets(config.receive_connectors)

    async def start() -> Gateway:
        gateway = Gateway(config)
        await gateway.start(sockets)
        return gateway

    gateway = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    try:
        started = time.perf_counter()
        with ProcessPoolExecutor(clients) as pool:
            counts = list(
                pool.map(
                    _rcpt_client, [port] * clients, [entries] * clients, [seconds] * clients, range(clients)
                )
            )
        elapsed = time.perf_counter() - started
    finally:
        asyncio.run_coroutine_threadsafe(gateway.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    return sum(counts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeward-dirbench-") as tmp:
        root = Path(tmp)
        server = Slapd.create(root / "slapd")
        try:
            started = time.perf_counter()
            server.load(users_ldif(args.entries))
            load_s = time.perf_counter() - started
            server.start()
            config = _config(root, server)
            # What the command costs before it reads anything (its imports), for comparison.
            subprocess.run([*EDGEWARD, "directory", "--help"], capture_output=True, check=True)
            baseline_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            full_s, rss_kib = _timed_sync(config, "--full")
            incremental_s, _ = _timed_sync(config)
            replica = root / "state" / "directory.db"
            state = read_replica(replica)
            replica_mib = replica.stat().st_size / 2**20
            assert len(state.entries) == args.entries, len(state.entries)
            rate = asyncio.run(_lookups(replica, args.lookups, args.entries))
            smtp_rate = _smtp_load(root, args.entries, args.clients, args.seconds)
        finally:
            server.remove()
    result = {
        "entries": args.entries,
        "addresses": 2 * args.entries,
        "slapadd_s": round(load_s, 1),
        "full_sync_s": round(full_s, 2),
        "full_sync_peak_rss_mib": round(rss_kib / 1024, 1),
        "command_baseline_rss_mib": round(baseline_kib / 1024, 1),
        "incremental_sync_s": round(incremental_s, 2),
        "replica_mib": round(replica_mib, 1),
        "lookups_per_s": round(rate),
        "smtp_rcpt_per_s": round(smtp_rate),
        "smtp_clients": args.clients,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
