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


def _owners(paths: list[Path]) -> dict[str, tuple[int, int, int]]:
    return {str(p): (p.lstat().st_uid, p.lstat().st_gid, stat.S_IMODE(p.lstat().st_mode)) for p in paths}


def test_apply_sets_owners_and_rollback_restores_them(netns: Netns, tmp_path: Path) -> None:
    # The gateway runs as daemon here; the files belong to nobody, as after a copy by hand.
    service, other = pwd.getpwnam("daemon"), pwd.getpwnam("nobody")
    data, spool, root = tmp_path / "data", tmp_path / "spool", tmp_path / "root"
    for folder in (root, data, data / "tls", data / "tls" / "keys", data / "state", tmp_path / "log"):
        folder.mkdir(mode=0o750)
    (spool / "queue").mkdir(parents=True, mode=0o750)
    (data / "queue").symlink_to(spool / "queue")  # root's link, as install-service makes it
    key = data / "tls" / "keys" / "mx.key"
    key.write_text("key")
    outside = tmp_path / "outside"
    outside.write_text("not the gateway's")
    (data / "tls" / "keys" / "planted").symlink_to(outside)
    conf = tmp_path / "edgeward.toml"
    conf.write_text('accepted_domains = ["example.test"]\n[server]\nhostname = "mx.example.test"\n'
                    f'user = "daemon"\ndata_dir = "{data}"\n[logging]\ndir = "{tmp_path}/log"\n')  # fmt: skip
    conf.chmod(0o640)
    mine = [conf, data / "tls", data / "tls" / "keys", key, data / "state", tmp_path / "log", spool / "queue"]
    for path in [*mine, outside]:
        os.chown(path, other.pw_uid, other.pw_gid)
    os.chown(data / "tls" / "keys" / "planted", other.pw_uid, other.pw_gid, follow_symlinks=False)
    key.chmod(0o644)
    before = _owners([*mine, outside, data / "tls" / "keys" / "planted"])

    found = netns.edgeward("harden", "analyse", "-c", str(conf), "--json", "--no-dns")
    owners = [f["found"] for f in json.loads(found.stdout)["findings"] if f["id"] == "EW-FILE-002"]
    assert f"{conf} is owned by nobody:nogroup (want root:daemon)" in owners
    # The queue through root's link, as install-service makes it.
    assert f"{spool / 'queue'} is owned by nobody:nogroup (want daemon:daemon)" in owners
    assert not any("planted" in x or "outside" in x for x in owners)

    done = netns.edgeward("harden", "apply", "-c", str(conf), "--root", str(root), "--yes")
    assert done.returncode == 0, done.stderr
    assert f"owner {key}: nobody:nogroup -> daemon:daemon" in done.stdout
    after = _owners(mine)
    assert after[str(conf)] == (0, service.pw_gid, 0o640)
    assert after[str(key)] == (service.pw_uid, service.pw_gid, 0o600)
    for path in (data / "tls", data / "state", tmp_path / "log", spool / "queue"):
        assert after[str(path)][:2] == (service.pw_uid, service.pw_gid), path
    # The planted link was neither followed nor changed.
    assert _owners([outside, data / "tls" / "keys" / "planted"]) == {
        k: v for k, v in before.items() if k in (str(outside), str(data / "tls" / "keys" / "planted"))
    }
    again = netns.edgeward("harden", "analyse", "-c", str(conf), "--json", "--no-dns")
    assert "EW-FILE-002" not in {f["id"] for f in json.loads(again.stdout)["findings"]}

    back = netns.edgeward("harden", "rollback", "-c", str(conf))
    assert back.returncode == 0, back.stderr
    assert "not restored" not in back.stdout
    assert _owners([*mine, outside, data / "tls" / "keys" / "planted"]) == before


def test_a_file_swapped_after_the_plan_is_not_touched(tmp_path: Path) -> None:
    from edgeward.harden.files import NotChanged, change, identity

    folder = tmp_path / "keys"
    folder.mkdir()
    planned = folder / "k"
    planned.write_text("k")
    seen = identity(str(planned))
    os.link(planned, tmp_path / "keep")  # so its inode cannot come back for the replacement
    target = tmp_path / "elsewhere"
    target.write_text("x")
    planned.unlink()
    planned.symlink_to(target)  # the service user's swap between plan and apply
    with pytest.raises(NotChanged, match="symlink"):
        change(str(planned), seen, uid=1, gid=1)
    link = tmp_path / "via"
    link.symlink_to(folder)
    planned.unlink()
    planned.write_text("k")
    with pytest.raises(NotChanged, match="folder on the way"):
        change(str(link / "k"), identity(str(planned)), uid=1, gid=1)
    with pytest.raises(NotChanged, match="replaced"):
        change(str(planned), seen, uid=1, gid=1)
    assert target.stat().st_uid == 0 and planned.stat().st_uid == 0
    change(str(planned), identity(str(planned)), uid=1, gid=1, mode=0o600)
    st = planned.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1, 1, 0o600)


def test_rollback_refuses_a_point_the_service_user_could_have_written(netns: Netns, tmp_path: Path) -> None:
    conf, root = _config(tmp_path), tmp_path / "root"
    root.mkdir()
    done = netns.edgeward("harden", "apply", "-c", str(conf), "--root", str(root), "--yes")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "state" / "harden"
    point = next(folder.glob("*.json"))
    os.chown(point, 65534, 65534)
    refused = netns.edgeward("harden", "rollback", "-c", str(conf))
    assert refused.returncode == 2 and "not root's own" in refused.stderr, refused.stderr
    os.chown(point, 0, 0)
    back = netns.edgeward("harden", "rollback", "-c", str(conf))
    assert back.returncode == 0, back.stderr


def test_a_locally_changed_unit_gets_the_shipped_one_and_rollback_puts_the_edit_back(
    netns: Netns, tmp_path: Path
) -> None:
    from edgeward.harden.install import Layout, unit_text

    conf, root = _config(tmp_path), tmp_path / "root"
    unit = Layout(root).unit
    unit.parent.mkdir(parents=True)
    shipped = unit_text("/usr/bin/edgeward")
    edited = shipped.replace("NoNewPrivileges=yes", "NoNewPrivileges=no")
    assert edited != shipped
    unit.write_text(edited)
    dry = netns.edgeward("harden", "apply", "-c", str(conf), "--root", str(root), "--dry-run")
    assert "-NoNewPrivileges=no" in dry.stdout and "+NoNewPrivileges=yes" in dry.stdout, dry.stdout
    assert unit.read_text() == edited
    done = netns.edgeward("harden", "apply", "-c", str(conf), "--root", str(root), "--yes")
    assert done.returncode == 0, done.stderr
    assert unit.read_text() == shipped and stat.S_IMODE(unit.stat().st_mode) == 0o644
    back = netns.edgeward("harden", "rollback", "-c", str(conf))
    assert back.returncode == 0, back.stderr
    assert unit.read_text() == edited
