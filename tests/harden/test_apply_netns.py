"""harden apply and rollback inside a network namespace this test creates, reached over a veth pair.

Only the namespace's own ruleset and ``net.*`` settings change; ``--root`` sends the sysctl
drop-in to a scratch folder and keeps host-wide (``kernel.*``) settings out of the live kernel.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None,
    reason="needs root, nft and ip",
)

SRC = str(Path(__file__).parents[2] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC}
OUTSIDE_TEMPLATE = 2600

LISTEN = """
import socket, sys, threading
socks = []
for port in map(int, sys.argv[1:]):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16); socks.append(s)
def serve(s):
    while True:
        c, _ = s.accept(); c.close()
for s in socks:
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

# Every readable net.* setting of the namespace; counters that move by themselves are left out.
DUMP_NET = """
import json, os
out = {}
for d, _, files in os.walk("/proc/sys/net"):
    for f in files:
        p = os.path.join(d, f)
        if "conntrack_count" in p:
            continue
        try:
            out[p] = open(p, "rb").read().hex()
        except OSError:
            pass
print(json.dumps(out))
"""


@dataclass
class Netns:
    name: str
    inside: str

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *cmd], capture_output=True, text=True,
                              env=ENV, check=check)  # fmt: skip

    def ruleset(self) -> str:
        return self.run("nft", "list", "ruleset").stdout

    def net_sysctls(self) -> dict[str, str]:
        return dict(json.loads(self.run(sys.executable, "-c", DUMP_NET).stdout))

    def edgeward(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "edgeward", *args, check=False)


@pytest.fixture
def netns() -> Iterator[Netns]:
    tag = os.getpid() % 100000
    name, a, b = f"ewh{tag}", f"ewh{tag}a", f"ewh{tag}b"
    net = f"10.231.{tag % 250}"
    sh = ["ip", "netns", "exec", name]
    setup = [
        ["ip", "netns", "add", name], ["ip", "link", "add", a, "type", "veth", "peer", "name", b],
        ["ip", "link", "set", b, "netns", name], ["ip", "addr", "add", f"{net}.1/30", "dev", a],
        ["ip", "link", "set", a, "up"], [*sh, "ip", "addr", "add", f"{net}.2/30", "dev", b],
        [*sh, "ip", "link", "set", b, "up"], [*sh, "ip", "link", "set", "lo", "up"],
    ]  # fmt: skip
    try:
        for cmd in setup:
            subprocess.run(cmd, check=True, capture_output=True)
        listener = subprocess.Popen(
            [*sh, sys.executable, "-c", LISTEN, "25", str(OUTSIDE_TEMPLATE)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        yield Netns(name, f"{net}.2")
        listener.kill()
        listener.communicate()
    finally:
        subprocess.run(["ip", "link", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _reach(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=3):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "dropped"


def _config(tmp_path: Path) -> Path:
    conf = tmp_path / "edgeward.toml"
    conf.write_text('accepted_domains = ["example.test"]\n[server]\nhostname = "mx.example.test"\n')
    conf.chmod(0o644)
    return conf


def test_apply_then_rollback_in_a_namespace(netns: Netns, tmp_path: Path) -> None:
    conf, root = _config(tmp_path), tmp_path / "root"
    root.mkdir()
    ruleset, sysctls = netns.ruleset(), netns.net_sysctls()
    host_kptr = Path("/proc/sys/kernel/kptr_restrict").read_bytes()
    host_rp = Path("/proc/sys/net/ipv4/conf/all/rp_filter").read_bytes()
    assert _reach(netns.inside, OUTSIDE_TEMPLATE) == "open"

    dry = netns.edgeward("harden", "apply", "-c", str(conf), "--template", "edge", "--root", str(root),
                         "--dry-run")  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "+\t\ttcp dport 25 accept" in dry.stdout and f"mode {conf}: 0644 -> 0640" in dry.stdout
    assert netns.ruleset() == ruleset

    done = netns.edgeward("harden", "apply", "-c", str(conf), "--template", "edge", "--root", str(root),
                          "--yes")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "rollback covers only what apply changed" in done.stdout
    assert _reach(netns.inside, 25) == "open"
    assert _reach(netns.inside, OUTSIDE_TEMPLATE) == "dropped"
    assert netns.run("cat", "/proc/sys/net/ipv4/conf/all/rp_filter").stdout == "1\n"
    assert "kernel.kptr_restrict = 2" in (root / "etc/sysctl.d/60-edgeward.conf").read_text()
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    # Nothing of the host itself changed.
    assert Path("/proc/sys/kernel/kptr_restrict").read_bytes() == host_kptr
    assert Path("/proc/sys/net/ipv4/conf/all/rp_filter").read_bytes() == host_rp
    again = netns.edgeward("harden", "analyse", "-c", str(conf), "--template", "edge", "--json", "--no-dns")
    ids = {f["id"] for f in json.loads(again.stdout)["findings"]}
    assert not ids & {"EW-NET-010", "EW-NET-011", "EW-KRN-002", "EW-FILE-001"}

    back = netns.edgeward("harden", "rollback", "-c", str(conf))
    assert back.returncode == 0, back.stderr
    assert "rollback covers only what apply changed" in back.stdout
    assert netns.ruleset() == ruleset
    assert netns.net_sysctls() == sysctls
    assert not (root / "etc/sysctl.d/60-edgeward.conf").exists()
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
    assert _reach(netns.inside, OUTSIDE_TEMPLATE) == "open"
    listed = netns.edgeward("harden", "history", "-c", str(conf), "--json")
    points = json.loads(listed.stdout)
    assert len(points) == 1 and points[0]["template"] == "edge" and points[0]["rolled_back"]
    nothing = netns.edgeward("harden", "rollback", "-c", str(conf))
    assert nothing.returncode == 2 and "no rollback point" in nothing.stderr


def test_apply_and_rollback_refuse_without_root(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    drop = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    for verb in (["apply", "--yes"], ["rollback"]):
        cmd = [*drop, sys.executable, "-m", "edgeward", "harden", *verb, "-c", str(tmp_path / "x.toml")]
        done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd="/")
        assert done.returncode == 2 and "run it as root" in done.stderr, done.stderr


def test_other_tables_stay_and_an_earlier_edgeward_table_comes_back(netns: Netns, tmp_path: Path) -> None:
    conf, root = _config(tmp_path), tmp_path / "root"
    root.mkdir()
    # The host's own table, and an edgeward table someone edited by hand (port 2600 opened).
    own = "table ip site {\n\tchain input {\n\t\ttype filter hook input priority 10; policy accept;\n" \
          "\t\ttcp dport 2600 counter accept\n\t}\n}\n"  # fmt: skip
    earlier = "table inet edgeward {\n\tchain input {\n\t\ttype filter hook input priority filter; " \
              "policy drop;\n\t\ttcp dport { 25, 2600 } accept\n\t}\n}\n"  # fmt: skip
    loaded = subprocess.run(["ip", "netns", "exec", netns.name, "nft", "-f", "-"], input=own + earlier,
                            text=True, capture_output=True)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    before = netns.ruleset()
    analysed = netns.edgeward("harden", "analyse", "-c", str(conf), "--json", "--no-dns")
    assert "EW-NET-011" in analysed.stdout
    done = netns.edgeward("harden", "apply", "-c", str(conf), "--root", str(root), "--yes")
    assert done.returncode == 0, done.stderr
    after = netns.ruleset()
    assert after.startswith(before.split("table inet edgeward")[0])  # the site's table as it was
    assert _reach(netns.inside, OUTSIDE_TEMPLATE) == "dropped"
    back = netns.edgeward("harden", "rollback", "-c", str(conf))
    assert back.returncode == 0, back.stderr
    assert netns.ruleset() == before
    assert _reach(netns.inside, OUTSIDE_TEMPLATE) == "open"
