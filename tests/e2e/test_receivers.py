"""``edgeward serve`` with two receiving processes: both accept, the limits are the gateway's,
a killed receiver is replaced without losing an acknowledged message, SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import smtplib
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.e2e.harness import GatewayProcess, SmtpSink, free_port
from tests.e2e.smtpwire import Wire
from tests.e2e.test_serve import _init

pytestmark = pytest.mark.e2e

PER_SOURCE = 3


def _two_receivers(workdir: Path, sink: SmtpSink) -> tuple[GatewayProcess, int]:
    port = free_port()
    config = _init(workdir, port, sink)
    text = config.read_text().replace("[server]\n", "[server]\nreceivers = 2\nshutdown_grace = 5\n", 1)
    text = text.replace("max_connections_per_source = 100", f"max_connections_per_source = {PER_SOURCE}")
    text = text.replace("[queue]\n", "[queue]\nscan_interval = 0.2\n")
    config.write_text(text)
    return GatewayProcess(config, port).start(), port


def _receivers(gw: GatewayProcess) -> list[int]:
    assert gw.proc is not None
    return [gw.proc.pid, *gw.children_in("receive")]


def _sockets(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue
    return count


def _send(port: int, tag: str, source: str = "127.0.0.2") -> bool:
    """One message; whether the gateway acknowledged it."""
    try:
        with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30) as c:
            c.ehlo("load.remote.test")
            c.mail("a@remote.test")
            c.rcpt("b@example.test")
            code, _ = c.data(
                f"From: a@remote.test\r\nSubject: {tag}\r\nMessage-ID: <{tag}@remote.test>\r\n\r\nhi\r\n"
            )
            return code == 250
    except (smtplib.SMTPException, OSError):
        return False


def _banners(port: int, stack: ExitStack, n: int, source: str) -> list[str]:
    """Open ``n`` connections from ``source`` and keep them; the first reply line of each."""
    replies = []
    for _ in range(n):
        wire = stack.enter_context(Wire(port, source))
        replies.append(wire.reply())
    return replies


def test_both_receivers_accept_connections(workdir: Path, sink: SmtpSink) -> None:
    gw, port = _two_receivers(workdir, sink)
    try:
        pids = _receivers(gw)
        assert len(pids) == 2
        before = {pid: _sockets(pid) for pid in pids}
        with ExitStack() as stack:
            # Distinct sources, so no per-source or per-network limit is met; the kernel spreads
            # the connections over both processes' sockets.
            for i in range(24):
                assert _banners(port, stack, 1, f"127.0.{20 + i}.1")[0].startswith("220")
            time.sleep(0.3)
            grown = {pid: _sockets(pid) - before[pid] for pid in pids}
        assert all(n > 0 for n in grown.values()), grown
        assert _send(port, "through-both")
        sink.wait_for(1)
    finally:
        assert gw.stop() == 0


def test_the_per_source_limit_holds_across_receivers(workdir: Path, sink: SmtpSink) -> None:
    gw, port = _two_receivers(workdir, sink)
    try:
        with ExitStack() as stack:
            replies = _banners(port, stack, 12, "127.0.9.9")
            admitted = [r for r in replies if r.startswith("220")]
            assert len(admitted) == PER_SOURCE, replies
            assert all(r.startswith("421 4.3.2") for r in replies if not r.startswith("220"))
        # Closed slots are given back in both processes.
        deadline = time.monotonic() + 10
        while True:
            with ExitStack() as stack:
                if (
                    sum(r.startswith("220") for r in _banners(port, stack, PER_SOURCE, "127.0.9.9"))
                    == PER_SOURCE
                ):
                    break
            assert time.monotonic() < deadline, "slots were not given back"
            time.sleep(0.2)
    finally:
        assert gw.stop() == 0


def test_a_killed_receiver_is_restarted_its_slots_given_back_and_nothing_is_lost(
    workdir: Path, sink: SmtpSink
) -> None:
    gw, port = _two_receivers(workdir, sink)
    try:
        acked = [f"before-{i}" for i in range(10) if _send(port, f"before-{i}")]
        [other] = gw.children_in("receive")
        with ExitStack() as stack:
            _banners(port, stack, PER_SOURCE, "127.0.7.7")  # slots in either process
            os.kill(other, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while gw.children_in("receive", timeout=0.05) in ([], [other]):
            assert time.monotonic() < deadline, "the receiving process was not restarted"
            time.sleep(0.1)
        acked += [f"after-{i}" for i in range(10) if _send(port, f"after-{i}")]
        assert len(acked) >= 15  # a connection hashed to the dead process's backlog waits, then is served
        with ExitStack() as stack:
            # The dead process's slots of this source were given back, or the limit would bite early.
            replies = _banners(port, stack, PER_SOURCE, "127.0.7.7")
            assert all(r.startswith("220") for r in replies), replies
        delivered = sink.wait_for(len(acked), timeout=60)
        subjects = {line.split(b": ", 1)[1].strip().decode() for m in delivered for line in m.split(b"\n")
                    if line.startswith(b"Subject: ")}  # fmt: skip
        assert set(acked) <= subjects
    finally:
        assert gw.stop() == 0


def test_sigterm_stops_every_process(workdir: Path, sink: SmtpSink) -> None:
    gw, _port = _two_receivers(workdir, sink)
    pids = [*_receivers(gw), gw.delivery()]
    assert len(pids) == 3
    assert gw.stop() == 0
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, "a child outlived its supervisor"
        time.sleep(0.1)


def test_sighup_reaches_every_process_and_a_dead_supervisor_takes_the_others_along(
    workdir: Path, sink: SmtpSink
) -> None:
    gw, port = _two_receivers(workdir, sink)
    children = [*gw.children_in("receive"), gw.delivery()]
    deadline = time.monotonic() + 30
    while gw.log.read_text().count(" started (") < 3:  # a SIGHUP before a loop is up is ignored
        assert time.monotonic() < deadline, gw.log.read_text()[-3000:]
        time.sleep(0.1)
    gw.signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while gw.log.read_text().count("configuration reloaded") < 3:
        assert time.monotonic() < deadline, gw.log.read_text()[-3000:]
        time.sleep(0.1)
    acked = [f"sup-{i}" for i in range(5) if _send(port, f"sup-{i}")]
    gw.kill9()  # the first receiving process, which supervises the others
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in children):
        assert time.monotonic() < deadline, "a child outlived its supervisor"
        time.sleep(0.1)
    assert len(acked) == 5
    # Acknowledged mail is in the spool or delivered; a new start sends what is left.
    restarted = GatewayProcess(gw.config_path, port).start()
    try:
        sink.wait_for(5, timeout=60)
    finally:
        assert restarted.stop() == 0


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"
