"""A running gateway whose local-recipients come from the directory replica, synced from slapd
with ``edgeward directory sync``: a user added in the directory is accepted after the next
sync, a removed one gets 550 5.1.1, a user's blocked sender gets 550 5.7.1; and the same fed
by a push from an inside host to the gateway's mutual-TLS listener."""

from __future__ import annotations

import json
import shutil
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.directory import replica
from edgeward.testing.slapd import SUFFIX, SYNC_DN, SYNC_PW, Slapd, add_user
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e
runner = CliRunner()
MESSAGE = b"From: a@remote.test\r\nTo: bob@example.test\r\nSubject: hello\r\n\r\nHello.\r\n"


@pytest.fixture
def slapd(workdir: Path) -> Iterator[Slapd]:
    if shutil.which("slapd") is None and not Path("/usr/sbin/slapd").exists():
        pytest.skip("slapd is not installed (scripts/install-test-deps.sh installs it)")
    server = Slapd.create(workdir / "slapd")
    # Ports below the ephemeral range: no outgoing connection can take them first.
    server.ldap_port, server.ldaps_port = free_port(), free_port()
    server.start()
    yield server
    server.remove()


def _directory(workdir: Path, server: Slapd) -> dict[str, object]:
    pw = workdir / "bind.pw"
    pw.write_text(SYNC_PW)
    pw.chmod(0o600)
    return {
        "urls": [server.ldap_url],
        "base_dn": SUFFIX,
        "bind_dn": SYNC_DN,
        "password_file": str(pw),
        "ca_file": str(server.ca_file),
        "starttls": True,
    }


def _sync(config_file: Path) -> None:
    result = runner.invoke(app, ["directory", "sync", "-c", str(config_file)])
    assert result.exit_code == 0, result.output


def _rcpt(port: int, address: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
        c.ehlo("client.remote.test")
        assert c.mail("a@remote.test")[0] == 250
        return c.rcpt(address)


def test_recipients_follow_the_directory(
    workdir: Path, sink: SmtpSink, slapd: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The gateway looks at the replica file at most once a second; here at every lookup.
    monkeypatch.setattr(replica, "_RECHECK", 0.0)
    directory = _directory(workdir, slapd)
    config_file = workdir / "edgeward.toml"
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in directory.items())
    config_file.write_text(
        f"accepted_domains = ['example.test']\n[server]\ndata_dir = '{workdir}'\n[directory]\n{lines}"
    )
    conn = slapd.admin()
    add_user(conn, "alice", "alice@example.test", blocked=("@spam.test",))
    _sync(config_file)
    port = free_port()
    config = gateway_config(
        workdir,
        port=port,
        sink_port=sink.port,
        directory=directory,
        agents={"local_recipients": {"enabled": True, "source": "directory"}},
    )
    with InProcessGateway(config):
        assert _rcpt(port, "alice@example.test")[0] == 250
        code, text = _rcpt(port, "bob@example.test")
        assert (code, text.split()[0]) == (550, b"5.1.1")

        add_user(conn, "bob", "bob@example.test")
        conn.delete(f"uid=alice,ou=people,{SUFFIX}")
        _sync(config_file)

        code, text = _rcpt(port, "alice@example.test")
        assert (code, text.split()[0]) == (550, b"5.1.1")
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
            c.ehlo("client.remote.test")
            assert c.sendmail("a@remote.test", ["bob@example.test"], MESSAGE) == {}
        [delivered] = sink.wait_for(1)
        assert b"Subject: hello" in delivered

        add_user(conn, "carol", "carol@example.test", blocked=("@spam.test",))
        _sync(config_file)
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
            c.ehlo("client.remote.test")
            assert c.mail("x@spam.test")[0] == 250
            code, text = c.rcpt("carol@example.test")
            assert (code, text.split()[0]) == (550, b"5.7.1")
            assert c.rcpt("bob@example.test")[0] == 250


def test_recipients_pushed_from_inside_over_mutual_tls(
    workdir: Path, sink: SmtpSink, slapd: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replica, "_RECHECK", 0.0)
    port, push_port = free_port(), free_port()
    gateway_file = workdir / "edgeward.toml"
    gateway_file.write_text(
        "accepted_domains = ['example.test']\n[server]\nhostname = 'mx.example.test'\n"
        f"data_dir = '{workdir}'\n"
        f"[directory]\npush_listen = '127.0.0.1:{push_port}'\n"
    )
    inside_dir = workdir / "inside"
    inside_dir.mkdir()
    inside_file = inside_dir / "edgeward.toml"
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in _directory(inside_dir, slapd).items())
    inside_file.write_text(f"[server]\ndata_dir = '{inside_dir}'\n[directory]\n{lines}")
    add_user(slapd.admin(), "dave", "dave@example.test")
    config = gateway_config(
        workdir,
        port=port,
        sink_port=sink.port,
        directory={"push_listen": f"127.0.0.1:{push_port}"},
        agents={"local_recipients": {"enabled": True, "source": "directory"}},
    )
    with InProcessGateway(config):
        # Before any push the gateway knows nobody: 451, never 550.
        code, text = _rcpt(port, "dave@example.test")
        assert (code, text.split()[0]) == (451, b"4.3.0")
        sub = workdir / "subscription.json"
        result = runner.invoke(app, ["directory", "subscribe", "-c", str(gateway_file), "--out", str(sub)])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["directory", "push", "-c", str(inside_file), "--subscription", str(sub)])
        assert result.exit_code == 0, result.output
        assert _rcpt(port, "dave@example.test")[0] == 250
        code, text = _rcpt(port, "erin@example.test")
        assert (code, text.split()[0]) == (550, b"5.1.1")
