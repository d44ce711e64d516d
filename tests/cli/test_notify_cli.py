"""``edgeward notify test``: a test notice through each configured channel, each result reported."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.queue.spool import Spool
from tests.notify import rfc5424
from tests.notify.test_webhook import KEY, Receiver
from tests.ports import free_port

runner = CliRunner()


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text(
        'accepted_domains = ["example.test"]\n'
        f'[server]\nhostname = "mx.example.test"\ndata_dir = "{tmp_path}"\n' + body
    )
    return path


def test_every_channel_gets_the_test_notice(tmp_path: Path) -> None:
    (tmp_path / "hook.key").write_bytes(KEY)
    log_path = tmp_path / "log.sock"
    receiver = Receiver()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(log_path))
    server.settimeout(10)
    try:
        config = _config(tmp_path, (
            '[notify]\nadmin_addresses = ["admin@example.test"]\n'
            f'[notify.syslog]\nenabled = true\ntransport = "unix"\naddress = "{log_path}"\n'
            f'[notify.webhook]\nurl = "http://127.0.0.1:{receiver.port}/hook"\nkey_file = "hook.key"\n'
        ))  # fmt: skip
        result = runner.invoke(app, ["notify", "test", "-c", str(config), "--json"])
        datagram = server.recv(65536)
        assert result.exit_code == 0, result.output
        results = {r["channel"]: r for r in json.loads(result.output)}
        assert set(results) == {"email", "syslog", "webhook"} and all(r["ok"] for r in results.values())
        assert results["webhook"]["detail"] == "HTTP 200"
        only = runner.invoke(app, ["notify", "test", "-c", str(config), "--channel", "webhook", "--json"])
        assert [r["channel"] for r in json.loads(only.output)] == ["webhook"]
    finally:
        server.close()
        receiver.stop()
    assert rfc5424.parse(datagram).msgid == "test"
    assert [doc["kind"] for doc in receiver.received] == ["test", "test"] and receiver.bad_signatures == 0
    [record] = Spool(tmp_path / "queue", fsync=False).list()
    assert [r.address for r in record.recipients] == ["admin@example.test"] and record.mail_from == ""


def test_a_failing_channel_exits_1_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "hook.key").write_bytes(KEY)
    config = _config(tmp_path, (
        f'[notify.webhook]\nurl = "http://127.0.0.1:{free_port()}/"\nkey_file = "hook.key"\ntimeout = 5\n'
    ))  # fmt: skip
    result = runner.invoke(app, ["notify", "test", "-c", str(config)])
    assert result.exit_code == 1
    assert "webhook" in result.output and "FAILED" in result.output


def test_no_channel_or_an_unknown_one_is_bad_input(tmp_path: Path) -> None:
    config = _config(tmp_path, "")
    result = runner.invoke(app, ["notify", "test", "-c", str(config)])
    assert result.exit_code == 2 and "no notification channel" in result.output
    config = _config(tmp_path, '[notify]\nadmin_addresses = ["admin@example.test"]\n')
    result = runner.invoke(app, ["notify", "test", "-c", str(config), "--channel", "syslog"])
    assert result.exit_code == 2 and "not configured" in result.output
