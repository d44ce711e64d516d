"""SIGTERM against ``edgeward serve`` (receiving and delivery processes), with real clients.

Idle sessions are told ``421 4.3.2`` at once, a message on its way is given the grace period,
a stalled one is cut at its end, a delivery in flight goes back to the queue; nothing that was
answered ``250`` is lost and nothing leaves a traceback in the log.
"""

from __future__ import annotations

import signal
import smtplib
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import NO_OUTSIDE_DNS, SMTP_SINK, GatewayProcess, SmtpSink, free_port
from tests.e2e.smtpwire import Wire
from tests.e2e.test_serve import _edgeward

pytestmark = pytest.mark.e2e

HEAD = (
    b"From: <a@remote.test>\r\nSubject: during-shutdown\r\n"
    b"Message-ID: <during-shutdown@remote.test>\r\n\r\n"
)


def _config(workdir: Path, port: int, smart_host_port: int, grace: float) -> Path:
    args = ["init", "--dir", str(workdir / "gw"), "--hostname", "mx.example.test", "--listen",
            f"127.0.0.1:{port}", "--accept-domain", "example.test", "--relay-from", "127.0.0.1/32",
            "--smart-host", f"127.0.0.1:{smart_host_port}"]  # fmt: skip
    out = _edgeward(*args)
    assert out.returncode == 0, out.stderr
    (workdir / "gw").chmod(0o755)
    path = workdir / "gw" / "edgeward.toml"
    text = path.read_text()
    text = text.replace("[server]\n", f"[server]\nshutdown_grace = {grace}\n", 1)
    text = text.replace("[queue]\n", "[queue]\nglitch_retry_interval = 1\nscan_interval = 0.2\n", 1)
    path.write_text(text + NO_OUTSIDE_DNS)
    return path


def _stopped_cleanly(gw: GatewayProcess) -> str:
    assert gw.proc is not None
    rc = gw.proc.wait(120)
    gw.proc = None
    log = gw.log.read_text()
    assert rc == 0, log[-4000:]
    assert "Traceback" not in log and "CancelledError" not in log, log[-4000:]
    return log


@pytest.fixture
def need_sink() -> None:
    if not Path(SMTP_SINK).exists():
        pytest.skip("Postfix's smtp-sink is not installed")


def test_idle_sessions_get_421_at_once_and_a_message_on_its_way_finishes(
    workdir: Path, sink: SmtpSink
) -> None:
    port = free_port()
    gw = GatewayProcess(_config(workdir, port, sink.port, grace=60), port).start()
    try:
        with Wire(port, "127.0.0.2") as idle, Wire(port, "127.0.0.3") as sender:
            assert idle.reply().startswith("220")
            assert idle.command("EHLO idle.remote.test").startswith("250")
            sender.start_mail()
            assert sender.command("DATA").startswith("354")
            sender.send(HEAD)
            gw.signal(signal.SIGTERM)
            # The idle session hears at once, while the other is still sending its message.
            assert idle.reply().startswith("421 4.3.2")
            assert idle.closed_by_server()
            sender.send(b"the rest of the message\r\n.\r\n")
            assert sender.reply().startswith("250 2.0.0"), gw.log.read_text()[-3000:]
            # With the message accepted, the session does not wait for another command.
            assert sender.reply().startswith("421 4.3.2")
            assert sender.closed_by_server()
        _stopped_cleanly(gw)
        # Accepted during the drain: delivered then, or kept in the spool for the next start.
        gw.start()
        assert any(b"Subject: during-shutdown" in m for m in sink.wait_for(1))
    finally:
        if gw.proc is not None:
            gw.stop()


def test_a_stalled_message_is_cut_with_421_at_the_end_of_the_grace_period(
    workdir: Path, sink: SmtpSink
) -> None:
    port = free_port()
    gw = GatewayProcess(_config(workdir, port, sink.port, grace=1), port).start()
    try:
        with Wire(port, "127.0.0.2") as sender:
            sender.start_mail()
            assert sender.command("DATA").startswith("354")
            sender.send(HEAD + b"and then nothing more")
            gw.signal(signal.SIGTERM)
            assert sender.reply().startswith("421 4.3.2")
        _stopped_cleanly(gw)
        # Never answered 250, so never queued: the client still has it and will retry.
        logs = "".join(p.read_text() for p in (workdir / "gw" / "log").glob("tracking*.log"))
        assert "during-shutdown" not in logs
        assert not list((workdir / "gw" / "queue").rglob("*.eml"))
    finally:
        if gw.proc is not None:
            gw.stop()


class _StallingServer(socketserver.ThreadingTCPServer):
    """A next hop that takes the whole message and then never answers it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int) -> None:
        self.got_message = threading.Event()
        self.release = threading.Event()
        super().__init__(("127.0.0.1", port), _StallingHandler)


class _StallingHandler(socketserver.StreamRequestHandler):
    server: _StallingServer

    def handle(self) -> None:
        self.wfile.write(b"220 stall.test ESMTP\r\n")
        in_data = False
        for line in self.rfile:
            if in_data:
                if line == b".\r\n":
                    self.server.got_message.set()
                    self.server.release.wait(120)
                    return
                continue
            verb = line[:4].upper()
            if verb == b"DATA":
                in_data = True
                self.wfile.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def stalling_next_hop() -> Iterator[_StallingServer]:
    server = _StallingServer(free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_a_delivery_cut_by_sigterm_goes_back_to_the_queue(
    workdir: Path, stalling_next_hop: _StallingServer, need_sink: None
) -> None:
    hop_port = stalling_next_hop.server_address[1]
    port = free_port()
    gw = GatewayProcess(_config(workdir, port, int(hop_port), grace=1), port).start()
    try:
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
            c.ehlo("remote.test")
            c.mail("a@remote.test")
            c.rcpt("b@example.test")
            assert c.data(HEAD + b"delivered after a restart\r\n")[0] == 250
        assert stalling_next_hop.got_message.wait(60)
        gw.signal(signal.SIGTERM)
        _stopped_cleanly(gw)
        # The next hop comes back as a working server on the same port; the restarted
        # gateway delivers what the cut attempt left in the queue.
        stalling_next_hop.release.set()
        stalling_next_hop.shutdown()
        stalling_next_hop.server_close()
        _wait_port_free(int(hop_port))
        sink = SmtpSink(workdir, port=int(hop_port)).start()
        try:
            gw.start()
            assert any(b"delivered after a restart" in m for m in sink.wait_for(1))
        finally:
            gw.stop()
            sink.stop()
    finally:
        if gw.proc is not None:
            gw.stop()


def _wait_port_free(port: int) -> None:
    for _ in range(200):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return
            except OSError:
                threading.Event().wait(0.05)
    raise TimeoutError(f"port {port} stays in use")
