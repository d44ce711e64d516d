"""The gateway started the way the shipped unit starts it: as edgeward, with only an ambient
CAP_NET_BIND_SERVICE, binding port 25 in a network namespace of its own. Once it serves, neither
the receiving nor the delivery process holds any capability."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("ip") is None,
    reason="needs root, setpriv and ip",
)

SRC = str(Path(__file__).parents[2] / "src")
CONF = """accepted_domains = ["example.test"]
[server]
hostname = "mx.example.test"
[[receive_connectors]]
name = "internet"
bindings = ["127.0.0.1:25"]
[[send_connectors]]
name = "inbound"
address_spaces = ["example.test"]
drop_dir = "drop"
"""
PROBE = "import socket; socket.create_connection(('127.0.0.1', 25), timeout=2).recv(64)"


def _caps(pid: int) -> list[int]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return [int(x.split()[1], 16) for x in lines if x.startswith(("CapEff", "CapPrm", "CapAmb"))]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_serving_process_and_delivery_process_hold_no_capability() -> None:
    user = pwd.getpwnam("edgeward")
    ns = f"ewu{os.getpid() % 100000}"
    with tempfile.TemporaryDirectory(dir="/tmp") as name:
        home = Path(name)
        home.chmod(0o755)
        (home / "edgeward.toml").write_text(CONF)
        os.chown(home, user.pw_uid, user.pw_gid)
        subprocess.run(["ip", "netns", "add", ns], check=True)
        proc = None
        try:
            subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
            cmd = ["ip", "netns", "exec", ns, "setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                   "--clear-groups", "--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service",
                   sys.executable, "-m", "edgeward", "serve", "-c", str(home / "edgeward.toml")]  # fmt: skip
            proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": SRC}, cwd="/",
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
            probe = ["ip", "netns", "exec", ns, sys.executable, "-c", PROBE]
            for _ in range(100):  # the banner arrives once serve has bound and dropped
                if subprocess.run(probe, capture_output=True).returncode == 0:
                    break
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.2)
            else:
                pytest.fail("the gateway never answered on port 25")
            # ip netns exec -> setpriv exec -> python: proc.pid is the gateway itself.
            assert _caps(proc.pid) == [0, 0, 0]
            delivery = _children(proc.pid)
            assert delivery and all(_caps(pid) == [0, 0, 0] for pid in delivery)
            assert all(Path(f"/proc/{pid}").stat().st_uid == user.pw_uid for pid in [proc.pid, *delivery])
        finally:
            if proc is not None:
                proc.terminate()
                proc.communicate(timeout=60)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
