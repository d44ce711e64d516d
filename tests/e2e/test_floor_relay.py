"""The Python floor relay (bench/relay/floor.py) keeps the guarantees the relay benchmark measures
it under: what it accepts reaches the next hop unchanged, and a message is on disk before its 250.

Both process models run: one process, and a receiving process with a delivery process.
"""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import REPO, SmtpSink, free_port, wait_banner
from tests.smtpdownstream import ClosingController

pytestmark = pytest.mark.e2e

FLOOR = REPO / "bench" / "relay" / "floor.py"

DOTS = (
    b"From: <a@src.test>\r\nTo: <b@dst.test>\r\nSubject: dots\r\n\r\n"
    b".a line that starts with a dot\r\n..two dots\r\n.\r\n...\r\nend\r\n"
)
LEADING_DOT = b".the very first line starts with a dot\r\n\r\nbody\r\n"
LARGE = b"Subject: large\r\n\r\n" + b"".join(b"%077d\r\n" % i for i in range(300 * 1024 // 79))


class Floor:
    """One floor relay as a child process in its own session (so it can be killed whole)."""

    def __init__(self, root: Path, sink_port: int, processes: int) -> None:
        self.port = free_port()
        self.queue = root / "queue"
        self.log = root / "floor.log"
        self.stderr = root / "floor.stderr"
        self.args = [
            sys.executable, str(FLOOR), "--listen", f"127.0.0.1:{self.port}",
            "--smart-host", f"127.0.0.1:{sink_port}", "--dir", str(self.queue), "--log", str(self.log),
            "--processes", str(processes),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Floor:
        with self.stderr.open("ab") as err:
            self.proc = subprocess.Popen(self.args, stdout=err, stderr=err, start_new_session=True)
        wait_banner(self.port)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(10)
            self.proc = None

    def send(self, *messages: bytes) -> list[str]:
        """Send each message in one session; return each 250's text after DATA."""
        replies = []
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
            client.ehlo("client.test")
            for data in messages:
                assert client.mail("a@src.test")[0] == 250
                assert client.rcpt("b@dst.test")[0] == 250
                code, text = client.data(data)
                assert code == 250, text
                replies.append(text.decode())
        return replies

    def queued(self) -> list[str]:
        return sorted(p.name for p in self.queue.iterdir())


@pytest.fixture(params=[1, 2], ids=["one-process", "two-processes"])
def processes(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def floors() -> Iterator[list[Floor]]:
    started: list[Floor] = []
    yield started
    for floor in started:
        floor.stop()
        # Nothing may have gone wrong inside the relay, even where the client could not see it.
        assert "Traceback" not in floor.stderr.read_text(errors="replace")


def test_messages_reach_smtp_sink_unchanged(
    workdir: Path, sink: SmtpSink, processes: int, floors: list[Floor]
) -> None:
    floor = Floor(workdir, sink.port, processes).start()
    floors.append(floor)
    floor.send(DOTS, LEADING_DOT, LARGE)
    dumps = sink.wait_for(3)
    # smtp-sink writes what it received with LF line ends, after lines of its own, then an
    # empty line; smtplib sent every line with CRLF.
    for sent in (DOTS, LEADING_DOT, LARGE):
        expected = sent.replace(b"\r\n", b"\n") + b"\n"
        assert sum(d.endswith(expected) for d in dumps) == 1, sent[:60]
    assert all(b"X-Helo-Args: floor.bench.test\n" in d for d in dumps)
    lines = _wait_log(floor, 3)
    assert all(" status=sent " in line and "from=<a@src.test> to=<b@dst.test>" in line for line in lines)
    _wait_empty(floor)


def test_pipelined_commands_and_limits(
    workdir: Path, sink: SmtpSink, processes: int, floors: list[Floor]
) -> None:
    floor = Floor(workdir, sink.port, processes).start()
    floors.append(floor)
    with socket.create_connection(("127.0.0.1", floor.port), timeout=30) as conn:
        replies = conn.makefile("rb")

        def codes(n: int) -> list[bytes]:
            got: list[bytes] = []
            while len(got) < n:
                line = replies.readline()
                if line[3:4] != b"-":
                    got.append(line[:3])
            return got

        assert codes(1) == [b"220"]
        conn.sendall(b"EHLO c.test\r\nMAIL FROM:<a@src.test> SIZE=100\r\nRCPT TO:<b@dst.test>\r\nDATA\r\n")
        assert codes(4) == [b"250", b"250", b"250", b"354"]
        # The next commands arrive with the message's end: they are answered after its 250.
        conn.sendall(
            b"Subject: pipelined\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@src.test> SIZE=99999999\r\n"
            b"NOOP " + b"x" * 3000 + b"\r\nRCPT TO:<b@dst.test>\r\nQUIT\r\n"
        )
        assert codes(5) == [b"250", b"552", b"500", b"503", b"221"]
    [dump] = sink.wait_for(1)
    assert dump.endswith(b"Subject: pipelined\n\nbody\n\n")
    _wait_empty(floor)


def test_a_message_over_the_size_limit_is_refused(workdir: Path, sink: SmtpSink, floors: list[Floor]) -> None:
    floor = Floor(workdir, sink.port, 1).start()
    floors.append(floor)
    line = b"y" * 78 + b"\r\n"
    with smtplib.SMTP("127.0.0.1", floor.port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("a@src.test")
        client.rcpt("b@dst.test")
        code, _ = client.data(b"Subject: huge\r\n\r\n" + line * (11 * 1024 * 1024 // len(line)))
        assert code == 552
        # The session reads on to the end of the refused message and stays usable.
        assert client.noop()[0] == 250
    floor.send(DOTS)
    [dump] = sink.wait_for(1)
    assert dump.endswith(DOTS.replace(b"\r\n", b"\n") + b"\n")


class _Recorder:
    def __init__(self) -> None:
        self.data: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data.append(envelope.original_content)
        return "250 2.0.0 Ok"


def test_bytes_on_the_wire_are_identical(workdir: Path, processes: int, floors: list[Floor]) -> None:
    # smtp-sink's dump hides line ends; aiosmtpd keeps the unstuffed bytes as they came.
    recorder = _Recorder()
    downstream = ClosingController(recorder, hostname="127.0.0.1", port=free_port(), decode_data=False)
    downstream.start()
    try:
        floor = Floor(workdir, downstream.port, processes).start()
        floors.append(floor)
        floor.send(DOTS, LEADING_DOT, LARGE)
        deadline = time.monotonic() + 30
        while len(recorder.data) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(recorder.data) == sorted([DOTS, LEADING_DOT, LARGE])
        _wait_empty(floor)
    finally:
        downstream.stop()


def test_a_message_is_on_disk_before_its_250(workdir: Path, processes: int, floors: list[Floor]) -> None:
    # Nothing listens at the smart host yet: the message stays queued, retried with back-off.
    sink_port = free_port()
    floor = Floor(workdir, sink_port, processes).start()
    floors.append(floor)
    [reply] = floor.send(DOTS)
    msg_id = reply.rsplit(" ", 1)[-1]
    assert floor.queued() == [f"{msg_id}.msg"]
    floor.stop(signal.SIGKILL)

    sink = SmtpSink(workdir, port=sink_port).start()
    try:
        floor.start()
        [dump] = sink.wait_for(1)
        assert dump.endswith(DOTS.replace(b"\r\n", b"\n") + b"\n")
        _wait_empty(floor)
        assert any(f" {msg_id} " in line and " status=sent " in line for line in _wait_log(floor, 1))
    finally:
        sink.stop()


def _wait_log(floor: Floor, sent: int, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = floor.log.read_text().splitlines() if floor.log.exists() else []
        if sum(" status=sent " in line for line in lines) >= sent:
            return [line for line in lines if " status=sent " in line]
        time.sleep(0.05)
    raise TimeoutError(f"floor logged fewer than {sent} deliveries")


def _wait_empty(floor: Floor, timeout: float = 30.0) -> None:
    """The queue file goes only after the next hop's 250, in the removal round that follows."""
    deadline = time.monotonic() + timeout
    while floor.queued() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert floor.queued() == []
