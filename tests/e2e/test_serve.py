"""``edgeward init`` and ``edgeward serve`` as an administrator runs them, in child processes."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.harness import NO_OUTSIDE_DNS, GatewayProcess, SmtpSink, free_port

pytestmark = pytest.mark.e2e


def _edgeward(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeward", *args], capture_output=True, text=True, timeout=120, check=False
    )


def _init(workdir: Path, port: int, sink: SmtpSink | None, *extra: str) -> Path:
    args = ["init", "--dir", str(workdir / "gw"), "--hostname", "mx.example.test"]
    args += [
        "--listen",
        f"127.0.0.1:{port}",
        "--accept-domain",
        "example.test",
        "--relay-from",
        "127.0.0.1/32",
    ]
    if sink is not None:
        args += ["--smart-host", f"127.0.0.1:{sink.port}"]
    out = _edgeward(*args, *extra)
    assert out.returncode == 0, out.stderr
    (workdir / "gw").chmod(0o755)
    config = workdir / "gw" / "edgeward.toml"
    config.write_text(config.read_text() + NO_OUTSIDE_DNS)
    return config


def _send(port: int, n: int, tag: str) -> str:
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
        _, _ = c.ehlo("load.remote.test")
        c.mail("a@remote.test")
        c.rcpt("b@example.test")
        code, text = c.data(
            f"From: a@remote.test\r\nSubject: {tag}-{n}\r\n"
            f"Message-ID: <{tag}-{n}@remote.test>\r\n\r\nmessage {n}\r\n"
        )
        assert code == 250
        return text.decode()


def _fast_retry(config: Path) -> None:
    text = config.read_text().replace(
        "[queue]\n", "[queue]\nglitch_retry_interval = 1\nscan_interval = 0.2\n"
    )
    config.write_text(text)


def test_init_writes_a_secure_configuration(workdir: Path) -> None:
    config = _init(workdir, free_port(), None)
    text = config.read_text()
    assert 'accepted_domains = ["example.test"]' in text
    assert 'drop_dir = "drop"' in text
    key = next((workdir / "gw" / "tls" / "keys").iterdir())
    assert key.stat().st_mode & 0o777 == 0o600
    check = _edgeward("config", "check", "--config", str(config))
    assert check.returncode == 0, check.stderr
    assert "open relay" not in check.stderr
    listed = _edgeward("cert", "list", "--store", str(workdir / "gw" / "tls"), "--json")
    [cert] = json.loads(listed.stdout)["certificates"]
    assert "mx.example.test" in cert["sans"] and "mx" in cert["sans"]


def test_init_refuses_to_write_an_open_relay(workdir: Path) -> None:
    out = _edgeward("init", "--dir", str(workdir / "x"), "--relay-from", "0.0.0.0/0")
    assert out.returncode == 2
    assert "open relay" in out.stderr


def test_config_check_names_the_key_and_what_was_found(workdir: Path) -> None:
    bad = workdir / "bad.toml"
    bad.write_text('[[receive_connectors]]\nname = "x"\nmax_recipients = "many"\n')
    out = _edgeward("config", "check", "--config", str(bad))
    assert out.returncode == 2
    assert "receive_connectors.0.max_recipients" in out.stderr and "'many'" in out.stderr


def test_quick_start_drop_folder_gets_the_message(workdir: Path) -> None:
    port = free_port()
    config = _init(workdir, port, None)
    gw = GatewayProcess(config, port).start()
    try:
        reply = _send(port, 1, "drop")
        msg_id = reply.rsplit(" ", 1)[-1]
        drop = workdir / "gw" / "drop"
        deadline = time.monotonic() + 30
        while not (drop / f"{msg_id}.eml").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b"Subject: drop-1" in (drop / f"{msg_id}.eml").read_bytes()
        envelope = json.loads((drop / f"{msg_id}.json").read_text())
        assert envelope["recipients"] == ["b@example.test"]
    finally:
        assert gw.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop is only observable when started as root")
def test_serve_started_as_root_runs_as_the_service_user(workdir: Path) -> None:
    port = free_port()
    gw = GatewayProcess(_init(workdir, port, None), port).start()
    try:
        assert gw.proc is not None
        status = Path(f"/proc/{gw.proc.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert set(uid_line.split()[1:]) != {"0"} and "0" not in uid_line.split()[1:]
    finally:
        gw.stop()


def test_kill_9_under_load_loses_no_accepted_message(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = _init(workdir, port, sink)
    _fast_retry(config)
    sink.stop()  # deliveries wait in the queue while the gateway is killed
    gw = GatewayProcess(config, port).start()
    accepted: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                _send(port, worker * 100000 + n, "kill")
            except (OSError, smtplib.SMTPException, AssertionError):
                continue  # the gateway died mid-transaction: that message was never acknowledged
            with lock:
                accepted.append(f"kill-{worker * 100000 + n}")

    threads = [threading.Thread(target=load, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(accepted) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    gw.kill9()
    stop.set()
    for t in threads:
        t.join(60)
    assert len(accepted) >= 150
    sink.start()
    gw = GatewayProcess(config, port).start()
    try:
        messages = sink.wait_for(len(accepted), timeout=120)
    finally:
        gw.stop()
    subjects = {
        line.split(b": ", 1)[1].decode()
        for m in messages
        for line in m.split(b"\n")
        if line.startswith(b"Subject: ")
    }
    assert set(accepted) <= subjects


def test_downstream_down_then_back_delivers_after_retry(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = _init(workdir, port, sink)
    _fast_retry(config)
    sink.stop()
    gw = GatewayProcess(config, port).start()
    try:
        _send(port, 1, "retry")
        deadline = time.monotonic() + 30
        listing: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            out = _edgeward("queue", "list", "--config", str(config), "--json")
            listing = json.loads(out.stdout or "[]")
            if listing and listing[0].get("state") == "deferred":
                break
            time.sleep(0.2)
        assert listing and listing[0]["state"] == "deferred"
        sink.start()
        [message] = sink.wait_for(1, timeout=60)
        assert b"Subject: retry-1" in message
    finally:
        gw.stop()


def test_sighup_reloads_and_sigterm_drains(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = _init(workdir, port, sink)
    gw = GatewayProcess(config, port).start()
    try:
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as open_session:
            open_session.ehlo("held.remote.test")
            config.write_text(
                config.read_text().replace('["example.test"]', '["example.test", "other.test"]', 1)
            )
            gw.signal(signal.SIGHUP)
            time.sleep(1)
            # The session that was open keeps working across the reload...
            assert open_session.noop()[0] == 250
            # ...and a new session sees the new accepted domain.
            with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
                c.ehlo("new.remote.test")
                c.mail("a@remote.test")
                assert c.rcpt("x@other.test")[0] == 250
            open_session.mail("a@remote.test")
            open_session.rcpt("b@example.test")
            assert open_session.data(b"From: a@remote.test\r\nSubject: across-reload\r\n\r\nx\r\n")[0] == 250
        assert any(b"Subject: across-reload" in m for m in sink.wait_for(1))
    finally:
        # SIGTERM drains and exits cleanly, the delivery process with it.
        assert gw.stop() == 0


def test_a_killed_delivery_process_is_restarted_and_nothing_is_lost(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = _init(workdir, port, sink)
    _fast_retry(config)
    gw = GatewayProcess(config, port).start()
    try:
        children = gw.children_in("deliver")
        assert len(children) == 1, "the delivery process runs beside the receiving one"
        os.kill(children[0], signal.SIGKILL)
        _send(port, 1, "after-crash")
        [message] = sink.wait_for(1, timeout=60)
        assert b"Subject: after-crash-1" in message
        restarted = gw.children_in("deliver")
        assert restarted and restarted != children
    finally:
        assert gw.stop() == 0


def test_sighup_moves_deliveries_to_a_new_smart_host(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = _init(workdir, port, sink)
    second = SmtpSink(workdir).start()
    gw = GatewayProcess(config, port).start()
    try:
        _send(port, 1, "before")
        assert b"Subject: before-1" in sink.wait_for(1)[0]
        config.write_text(config.read_text().replace(f"127.0.0.1:{sink.port}", f"127.0.0.1:{second.port}"))
        gw.signal(signal.SIGHUP)
        time.sleep(1.5)
        _send(port, 2, "after")
        [moved] = second.wait_for(1)
        assert b"Subject: after-2" in moved
        assert len(sink.messages()) == 1
    finally:
        gw.stop()
        second.stop()
