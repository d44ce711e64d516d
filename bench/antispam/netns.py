"""A private network namespace for the benchmark, removed again however the run ends.

Postfix, policyd-spf and OpenDMARC ask the resolver named in /etc/resolv.conf, which has no
port: to give them the benchmark's DNS without touching the host's, the benchmark runs inside
its own namespace, where ``ip netns exec`` bind-mounts ``/etc/netns/NAME/resolv.conf`` (naming
127.0.0.1) over /etc/resolv.conf and 127.0.0.1:53 is the benchmark's unbound. Only loopback
exists in there: nothing the benchmark starts can reach, or be reached from, the host's network.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from relay.procs import BenchError

IP = shutil.which("ip") or "/usr/sbin/ip"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=30, check=False)


def _pids(name: str) -> list[int]:
    out = _ip("netns", "pids", name)
    return [int(p) for p in out.stdout.split() if p.isdigit()]


def _kill_all(name: str) -> list[int]:
    """SIGKILL whatever still runs in the namespace (it would keep it alive); return the pids."""
    killed: list[int] = []
    for _ in range(20):
        pids = [p for p in _pids(name) if p != os.getpid()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.1)
    return killed


@contextlib.contextmanager
def namespace(name: str, extra_address: str) -> Iterator[str]:
    """Create namespace ``name`` with loopback up (also holding ``extra_address``) and its
    resolv.conf; delete both on exit."""
    etc = Path("/etc/netns") / name
    if _ip("netns", "add", name).returncode != 0:
        raise BenchError(f"ip netns add {name} failed: {_ip('netns', 'add', name).stderr.strip()}")
    try:
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
        for step in (("link", "set", "lo", "up"), ("addr", "add", f"{extra_address}/32", "dev", "lo")):
            done = _ip("-n", name, *step)
            if done.returncode != 0:
                raise BenchError(f"ip -n {name} {' '.join(step)} failed: {done.stderr.strip()}")
        yield name
    finally:
        for pid in _kill_all(name):
            print(f"warning: killed leftover process {pid} in namespace {name}")
        _ip("netns", "delete", name)
        shutil.rmtree(etc, ignore_errors=True)


def exec_prefix(name: str) -> list[str]:
    return [IP, "netns", "exec", name]


def inside() -> bool:
    """True when this process runs in a named namespace (``ip netns identify`` names it)."""
    return bool(_ip("netns", "identify", str(os.getpid())).stdout.strip())
