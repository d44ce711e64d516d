"""The next hop misbehaving: down, refusing, flapping, 1 byte a second; DNS down or silent.

Each case ends with the message deferred under the status code that names the failure (RFC
3463: 4.4.1 no answer, 4.4.2 connection dropped, 4.4.3 routing server failure, or the next
hop's own 4xx), and with the delivery side still free to deliver other mail.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeward.queue.model import MessageRecord, RecipientStatus
from edgeward.queue.spool import Spool
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e


class Trickle:
    """A next hop that greets at one byte a second and never finishes (slowloris, reversed)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self.sent = 0

    def __enter__(self) -> Trickle:
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            t = threading.Thread(target=self._drip, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _drip(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            # A multi-line greeting that never reaches its last line: each byte is progress, so
            # only a bound on the whole reply ends the wait.
            line = b"220-slow.next-hop.test\r\n"
            while not self._stop.wait(1.0):
                conn.sendall(bytes([line[self.sent % len(line)]]))
                self.sent += 1

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self._listener.close()


def _send(port: int, rcpt: str, tag: str, source: str = "127.0.0.1") -> None:
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30) as c:
        c.ehlo("client.remote.test")
        c.mail("a@remote.test")
        assert c.rcpt(rcpt)[0] == 250
        head = f"From: a@remote.test\r\nSubject: {tag}\r\nMessage-ID: <{tag}@remote.test>\r\n"
        assert c.data(head + "\r\nx\r\n")[0] == 250


def _deferred(root: Path, tag: str, timeout: float = 60) -> MessageRecord:
    """The queue record of ``tag`` once an attempt has deferred every recipient."""
    spool = Spool(root / "queue")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in spool.list():
            deferred = all(r.status is RecipientStatus.DEFERRED for r in record.recipients)
            if record.message_id == f"<{tag}@remote.test>" and record.attempts >= 1 and deferred:
                return record
        time.sleep(0.1)
    raise TimeoutError(f"{tag} was not deferred: {[r.recipients for r in spool.list()]}")


def _codes(record: MessageRecord) -> set[str]:
    return {" ".join(r.last_reply.split()[:2]) for r in record.recipients}


def _config(root: Path, port: int, sink_port: int, *routes: dict[str, Any], **extra: Any) -> Any:
    """The loopback gateway with extra send connectors ahead of the one to the sink."""
    send = [*routes, {"name": "inbound", "address_spaces": ["example.test", "*"],
                      "smart_hosts": [f"127.0.0.1:{sink_port}"]}]  # fmt: skip
    return gateway_config(root, port=port, sink_port=sink_port, send_connectors=send, **extra)


@pytest.fixture
def sink_factory(workdir: Path) -> Iterator[Any]:
    started: list[SmtpSink] = []

    def make(*extra: str) -> SmtpSink:
        s = SmtpSink(workdir, extra=extra).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


def test_a_next_hop_at_one_byte_a_second_is_deferred_and_blocks_nothing(
    workdir: Path, sink: SmtpSink
) -> None:
    port = free_port()
    with Trickle() as slow:
        slow_route = {"name": "slow", "address_spaces": ["slow.test"], "tls": "none",
                      "smart_hosts": [f"127.0.0.1:{slow.port}"], "connect_timeout": 3,
                      "command_timeout": 3}  # fmt: skip
        with InProcessGateway(_config(workdir, port, sink.port, slow_route)):
            _send(port, "x@slow.test", "slow-1")
            # While the slow hop holds its delivery, other mail still leaves.
            _send(port, "b@example.test", "fast-1")
            assert any(b"Subject: fast-1" in m for m in sink.wait_for(1))
            record = _deferred(workdir, "slow-1")
    assert slow.connections >= 1 and slow.sent >= 1
    assert all(code.startswith("451 4.4.") for code in _codes(record)), record.recipients


def test_dns_down_defers_with_4_4_3(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    dead = free_port()  # nothing answers there: ICMP port unreachable, at once
    mx_route = {"name": "mx", "address_spaces": ["dnsdown.test"], "dns_routing": True, "tls": "none"}
    config = _config(workdir, port, sink.port, mx_route, dns={"servers": ["127.0.0.1"], "port": dead,
                                                              "timeout": 1})  # fmt: skip
    with InProcessGateway(config):
        _send(port, "x@dnsdown.test", "dns-1")
        record = _deferred(workdir, "dns-1")
        _send(port, "b@example.test", "after-dns")
        assert any(b"Subject: after-dns" in m for m in sink.wait_for(1))
    assert _codes(record) == {"451 4.4.3"}, record.recipients


def test_a_silent_dns_server_defers_with_4_4_3(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    silent_port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", silent_port))  # takes queries, never answers
        mx_route = {"name": "mx", "address_spaces": ["dnsdown.test"], "dns_routing": True, "tls": "none"}
        config = _config(workdir, port, sink.port, mx_route,
                         dns={"servers": ["127.0.0.1"], "port": silent_port, "timeout": 1})  # fmt: skip
        with InProcessGateway(config):
            _send(port, "x@dnsdown.test", "dns-2")
            record = _deferred(workdir, "dns-2")
    assert _codes(record) == {"451 4.4.3"}, record.recipients


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (("-r", "RCPT"), "4"),  # the next hop's own soft refusal is kept as it was given
        (("-r", "DATA"), "4"),
        (("-q", "DATA"), "451 4.4.2"),  # hangs up instead of answering
        (("-q", "."), "451 4.4.2"),  # hangs up after the message, before its reply
    ],
)
def test_a_refusing_next_hop_defers_with_its_reason(
    workdir: Path, sink: SmtpSink, sink_factory: Any, option: tuple[str, ...], expected: str
) -> None:
    bad = sink_factory(*option)
    port = free_port()
    route = {"name": "bad", "address_spaces": ["bad.test"], "tls": "none",
             "smart_hosts": [f"127.0.0.1:{bad.port}"]}  # fmt: skip
    with InProcessGateway(_config(workdir, port, sink.port, route)):
        _send(port, "x@bad.test", "bad-1")
        record = _deferred(workdir, "bad-1")
        _send(port, "b@example.test", "after-bad")
        assert any(b"Subject: after-bad" in m for m in sink.wait_for(1))
    assert all(code.startswith(expected) for code in _codes(record)), record.recipients


def test_a_flapping_next_hop_gets_every_message(workdir: Path) -> None:
    port = free_port()
    sink = SmtpSink(workdir)
    with InProcessGateway(gateway_config(workdir, port=port, sink_port=sink.port)):
        sent = []
        for n in range(24):
            if n % 6 == 0:  # down, up, down, up ... while mail keeps coming
                sink.stop() if sink.proc else sink.start()
            _send(port, "b@example.test", f"flap-{n}", source="127.0.0.2")
            sent.append(f"flap-{n}")
        if sink.proc is None:
            sink.start()
        try:
            got = sink.wait_for(len(sent), timeout=90)
        finally:
            sink.stop()
    subjects = {line.split(b": ", 1)[1].decode() for m in got for line in m.split(b"\n")
                if line.startswith(b"Subject: ")}  # fmt: skip
    assert set(sent) <= subjects
