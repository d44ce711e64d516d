"""harden analyse against real sockets, files, a real nsd and configurations with known faults."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.harden.analyse import analyse
from edgeward.harden.findings import REGISTRY
from edgeward.harden.host import _decode, listeners
from edgeward.harden.template import load_template, parse_template
from tests.dnsserver import NSD, start_nsd
from tests.ports import free_port

BASE = """\
accepted_domains = ["example.test"]
[server]
hostname = "mx.example.test"
[[receive_connectors]]
name = "internet"
bindings = ["0.0.0.0:25"]
"""

SUBMISSION_NO_AUTH = """
[[receive_connectors]]
name = "submission"
bindings = ["0.0.0.0:587"]
remote_ranges = ["192.0.2.0/24"]
auth_mechanisms = ["PLAIN"]
permission_groups = ["anonymous", "users"]
protocol_log = true
"""


def _conf(tmp_path: Path, text: str = BASE, mode: int = 0o640) -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def _ids(report_findings: list[object]) -> set[str]:
    return {f.id for f in report_findings}  # type: ignore[attr-defined]


def test_every_id_is_registered_once_with_a_fix() -> None:
    for ident, rule in REGISTRY.items():
        assert ident.startswith("EW-") and rule.why and rule.fix and rule.title


def test_proc_net_addresses_decode() -> None:
    assert str(_decode("0100007F")) == "127.0.0.1"
    assert str(_decode("00000000000000000000000001000000")) == "::1"
    mapped = _decode("0000000000000000FFFF00000100007F")
    assert mapped.version == 6 and str(mapped.ipv4_mapped) == "127.0.0.1"


@pytest.fixture
def wide_listener() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("0.0.0.0", free_port()))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_a_listener_outside_the_template_is_found(tmp_path: Path, wide_listener: int) -> None:
    local = socket.socket()
    local.bind(("127.0.0.1", 0))
    local.listen()
    local_port = local.getsockname()[1]
    try:
        found = {(s.port, s.loopback) for s in listeners()}
        assert (wide_listener, False) in found and (local_port, True) in found
        report = analyse(load_template("edge"), _conf(tmp_path), dns=False)
    finally:
        local.close()
    extra = [f for f in report.findings if f.id == "EW-NET-001"]
    assert any(f"0.0.0.0:{wide_listener} " in f.found for f in extra)
    assert not any(f":{local_port} " in f.found for f in extra)


def test_a_loopback_only_port_beyond_loopback_is_high(tmp_path: Path, wide_listener: int) -> None:
    template = parse_template(f'name = "t"\nloopback_only = [{wide_listener}]\n', "t")
    report = analyse(template, _conf(tmp_path), dns=False)
    hits = [f for f in report.findings if f.id == "EW-NET-002"]
    assert hits and f":{wide_listener}" in hits[0].found and hits[0].rule.severity == "high"


def test_gateway_faults_get_their_ids(tmp_path: Path) -> None:
    text = BASE + "[agents]\nobserve_only = true\n" + SUBMISSION_NO_AUTH
    report = analyse(load_template("edge-submission"), _conf(tmp_path, text, 0o644), dns=False)
    ids = _ids(report.findings)
    # observe-only is an open relay (config check's error, folded in) and its own finding
    assert {"EW-CFG-001", "EW-FLT-002", "EW-FLT-003"} <= ids
    assert {"EW-AUTH-002", "EW-AUTH-003", "EW-AUTH-004", "EW-FILE-001"} <= ids
    auth = next(f for f in report.findings if f.id == "EW-AUTH-002")
    assert "submission" in auth.found and "587" in auth.found
    assert report.findings[0].rule.severity == "high"


def test_a_missing_or_stale_directory_replica_is_found(tmp_path: Path) -> None:
    from edgeward.config.load import load_config
    from edgeward.directory.replica import Meta, ReplicaState, write_replica
    from edgeward.paths import directory_replica_path

    text = BASE + '[agents.local_recipients]\nenabled = true\nsource = "directory"\n'
    text += '[directory]\nmax_age = "1h"\n'
    conf = _conf(tmp_path, text)
    found = [f for f in analyse(load_template("edge"), conf, dns=False).findings if f.id == "EW-DIR-001"]
    assert len(found) == 1 and "no directory replica" in found[0].found
    path = directory_replica_path(load_config(conf))
    write_replica(path, ReplicaState(meta=Meta(last_full=time.time() - 3 * 3600)))
    found = [f for f in analyse(load_template("edge"), conf, dns=False).findings if f.id == "EW-DIR-001"]
    assert len(found) == 1 and "3.0h ago" in found[0].found
    write_replica(path, ReplicaState(meta=Meta(last_full=time.time())))
    assert "EW-DIR-001" not in _ids(analyse(load_template("edge"), conf, dns=False).findings)
    # No directory in use: nothing to say.
    assert "EW-DIR-001" not in _ids(analyse(load_template("edge"), _conf(tmp_path), dns=False).findings)


def test_a_self_signed_certificate_on_the_internet_connector(tmp_path: Path) -> None:
    from edgeward.tls.store import CertificateStore

    conf = _conf(tmp_path)
    CertificateStore(tmp_path / "tls").ensure_default("mx.example.test")
    report = analyse(load_template("edge"), conf, dns=False)
    tls = [f for f in report.findings if f.id == "EW-TLS-002"]
    assert tls and "internet" in tls[0].found
    assert not any(f.id == "EW-TLS-003" for f in report.findings)


def test_an_unloadable_configuration_is_a_finding_and_host_checks_still_run(tmp_path: Path) -> None:
    conf = _conf(tmp_path, BASE + '[agents]\ndisabled = ["relay-control"]\n')
    report = analyse(load_template("edge"), conf, dns=False)
    assert "EW-CFG-000" in _ids(report.findings)
    assert any("listening TCP socket" in c for c in report.notes.checked)


def test_json_output_and_exit_code(tmp_path: Path) -> None:
    conf = _conf(tmp_path, BASE + "[agents]\nobserve_only = true\n")
    done = CliRunner().invoke(app, ["harden", "analyse", "-c", str(conf), "--json", "--no-dns"])
    assert done.exit_code == 1, done.output
    doc = json.loads(done.output)
    assert doc["template"] == "edge"
    first = doc["findings"][0]
    assert set(first) == {"id", "severity", "title", "found", "why", "fix"} and first["severity"] == "high"
    assert "DNS of the accepted domains (--no-dns)" in doc["not_checked"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root, setpriv")
def test_as_a_normal_user_it_says_what_it_could_not_read() -> None:
    # pytest's own tmp folders are 0700; this one must be open to the user the test runs as.
    with tempfile.TemporaryDirectory(dir="/tmp") as name:
        tmp_path = Path(name)
        tmp_path.chmod(0o755)
        _as_nobody(tmp_path)


def _as_nobody(tmp_path: Path) -> None:
    conf = _conf(tmp_path, BASE, 0o644)
    secret = tmp_path / "tls"
    secret.mkdir(mode=0o700)
    nobody = pwd.getpwnam("nobody")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    cmd = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    cmd += [sys.executable, "-m", "edgeward", "harden", "analyse", "-c", str(conf), "--json", "--no-dns"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/")
    assert done.returncode in (0, 1), done.stderr
    doc = json.loads(done.stdout)
    assert any("/etc/shadow is not readable" in n for n in doc["not_checked"])
    assert any(f"{secret}:" in n or str(secret) in n for n in doc["not_checked"])


ZONE = """$ORIGIN example.test.
$TTL 300
@ SOA ns.example.test. admin.example.test. 1 3600 600 86400 300
@ NS ns
ns A 127.0.0.1
@ MX 10 other.example.net.
@ TXT "v=spf1 -all"
_smtp._tls TXT "v=TLSRPTv1; rua=mailto:tls@example.test"
mx A 192.0.2.25
"""


@pytest.mark.skipif(NSD is None, reason="nsd is not installed")
def test_dns_of_the_accepted_domain(tmp_path: Path) -> None:
    server = start_nsd(tmp_path / "nsd", {"example.test": ZONE})
    try:
        text = BASE + f'[dns]\nservers = ["127.0.0.1"]\nport = {server.port}\ntimeout = 2\n'
        report = analyse(load_template("edge"), _conf(tmp_path, text), dns=True)
    finally:
        server.stop()
    dns_found = {f.id: f.found for f in report.findings if f.id.startswith("EW-DNS")}
    assert "other.example.net" in dns_found["EW-DNS-001"]
    assert "EW-DNS-002" not in dns_found and "EW-DNS-005" not in dns_found
    assert dns_found["EW-DNS-003"] == "example.test" and dns_found["EW-DNS-004"] == "example.test"
    # 192.0.2.25 has no PTR in any zone this server has: REFUSED is "not checked", not a finding
    assert "EW-DNS-006" in dns_found or any("reverse DNS" in n for n in report.notes.not_checked)


def test_a_certificate_near_expiry_bound_to_one_connector(tmp_path: Path) -> None:
    from edgeward.tls.store import CertificateStore

    store = CertificateStore(tmp_path / "tls")
    store.ensure_default("mx.example.test")  # a year: no finding for the default binding
    soon = store.create_self_signed("mx.example.test", days=5)
    store.enable(soon.thumbprint, service="smtp", connector="internet")
    report = analyse(load_template("edge"), _conf(tmp_path), dns=False)
    expiring = [f for f in report.findings if f.id == "EW-TLS-003"]
    assert len(expiring) == 1 and "internet" in expiring[0].found and "expires in" in expiring[0].found


def test_the_installed_unit_is_compared_with_the_shipped_one(tmp_path: Path) -> None:
    from edgeward.harden.install import Layout, unit_text

    report = analyse(load_template("edge"), _conf(tmp_path), dns=False)
    unit = Layout().unit
    hits = [f for f in report.findings if f.id == "EW-SVC-003"]
    if not unit.exists():
        assert hits and "does not exist" in hits[0].found
    else:
        exe = next(x for x in unit.read_text().splitlines() if x.startswith("ExecStart=")).split()[0][10:]
        assert bool(hits) == (unit.read_text() != unit_text(exe))


def test_progress_is_told_of_every_step_in_order(tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    text = BASE.replace('["example.test"]', '["example.test", "example.net"]')
    text += '[dns]\nservers = ["127.0.0.1"]\nport = 9\ntimeout = 0.2\n'  # nothing answers: not checked
    analyse(load_template("edge"), _conf(tmp_path, text), progress=lambda *a: seen.append(a))
    steps = [what for what, _, _ in seen]
    assert steps[:2] == ["listening sockets", "the firewall"] and steps[-1] == "done"
    dns_steps = {"DNS of example.test", "DNS of example.net", "reverse DNS of mx.example.test"}
    assert {"the gateway", *dns_steps} <= set(steps)
    total = seen[0][2]
    assert [done for _, done, _ in seen] == list(range(total + 1)) and {t for _, _, t in seen} == {total}


def _in_a_terminal(args: list[str]) -> str:
    import pty

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src"), "COLUMNS": "100"}
    env["TERM"] = "xterm"
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(sys.executable, [sys.executable, "-m", "edgeward", *args], env)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def test_a_bar_in_a_terminal_and_none_in_json(tmp_path: Path) -> None:
    import re

    conf = str(_conf(tmp_path))
    shown = _in_a_terminal(["harden", "analyse", "-c", conf, "--no-dns"])
    assert "harden analyse: template edge" in shown
    assert re.search(r"(checking|analysed).*\d+/\d+", shown), shown
    as_json = _in_a_terminal(["harden", "analyse", "-c", conf, "--no-dns", "--json"])
    assert json.loads(as_json)["template"] == "edge"
    # Not a terminal (the runner captures): the same table, and no bar.
    done = CliRunner().invoke(app, ["harden", "analyse", "-c", conf, "--no-dns"])
    assert "harden analyse: template edge" in done.output and "checking" not in done.output


def _zone(name: str, extra: str = "") -> str:
    return (f"$ORIGIN {name}.\n$TTL 300\n@ SOA ns.{name}. admin.{name}. 1 3600 600 86400 300\n"
            f"@ NS ns\nns A 127.0.0.1\n@ MX 10 mx\nmx A 192.0.2.26\n{extra}")  # fmt: skip


SEND_CONNECTORS = """
[[send_connectors]]
name = "partners"
address_spaces = ["partner.test", "plain.test", "broken.test", "*.wild.test"]
dns_routing = true
[[send_connectors]]
name = "bank"
address_spaces = ["bank.test"]
dns_routing = true
mta_sts = true
[[send_connectors]]
name = "verified"
address_spaces = ["verified.test"]
dns_routing = true
tls = "verify_hostname"
[[send_connectors]]
name = "relay"
address_spaces = ["relayed.test"]
smart_hosts = ["192.0.2.30:25"]
"""


@pytest.mark.skipif(NSD is None, reason="nsd is not installed")
def test_a_send_connector_weaker_than_a_domain_s_mta_sts(tmp_path: Path) -> None:
    sts = '_mta-sts TXT "v=STSv1; id=20261201T000000"\n'
    signed = ("partner.test", "bank.test", "verified.test", "relayed.test")
    zones = {name: _zone(name, sts) for name in signed}
    zones["plain.test"] = _zone("plain.test")
    zones["broken.test"] = _zone("broken.test", '_mta-sts TXT "v=STSv1; id=not-a-valid-id"\n')
    server = start_nsd(tmp_path / "nsd", {"example.test": ZONE, **zones})
    seen: list[str] = []
    try:
        text = BASE + f'[dns]\nservers = ["127.0.0.1"]\nport = {server.port}\ntimeout = 2\n' + SEND_CONNECTORS
        conf = _conf(tmp_path, text)
        report = analyse(load_template("edge"), conf, progress=lambda what, *_: seen.append(what))
    finally:
        server.stop()
    weak = [f.found for f in report.findings if f.id == "EW-TLS-004"]
    # Only the connector that would send opportunistically to a domain that publishes a policy;
    # a record that does not parse is no policy (RFC 8461 §3.1), a smart host is not the MX.
    assert weak == [
        "send connector partners: partner.test publishes MTA-STS (id 20261201T000000), sent with"
        " tls = 'opportunistic', mta_sts = false"
    ]
    assert {"MTA-STS of partner.test", "MTA-STS of bank.test", "MTA-STS of verified.test"} <= set(seen)
    assert not any("relayed.test" in s or "wild.test" in s for s in seen)
    assert any("MTA-STS records of 5 domain(s)" in c for c in report.notes.checked)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files to another user")
def test_another_users_link_on_the_way_is_not_followed(tmp_path: Path) -> None:
    from edgeward.config.load import load_config
    from edgeward.harden.apply import plan
    from edgeward.harden.filerules import trusted_path

    nobody = pwd.getpwnam("nobody")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "keys").mkdir(parents=True)
    (elsewhere / "keys" / "secret").write_text("not the gateway's")
    (tmp_path / "tls").symlink_to(elsewhere)  # what a service user owning the data folder could do
    os.chown(tmp_path / "tls", nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)
    (tmp_path / "state").symlink_to(elsewhere)  # root's own link stands for its target
    assert trusted_path(str(tmp_path / "tls" / "keys")) is None
    assert trusted_path(str(tmp_path / "state" / "keys")) == elsewhere / "keys"
    conf = _conf(tmp_path)
    report = analyse(load_template("edge"), conf, dns=False)
    skipped = next(n for n in report.notes.not_checked if n.startswith("symlinks not followed"))
    assert f"{tmp_path / 'tls' / 'keys'}" in skipped
    assert not any("secret" in f.found for f in report.findings)
    change = plan(load_template("edge"), load_config(conf), conf, tmp_path / "root")
    assert not any("secret" in line or f"{tmp_path}/tls" in line for line in change.diff())
    assert any("another user's symlink" in n for n in change.notes)
