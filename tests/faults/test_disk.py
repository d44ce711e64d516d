"""A full and a read-only spool: ``452 4.3.1``, nothing acknowledged lost, recovery when it clears.

The spool folder is a 2 MB tmpfs the test mounts (root only), so the kernel's own ENOSPC and
EROFS reach the gateway's writes; nothing is faked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e


def _queue(min_free_disk: int | str) -> dict[str, object]:
    return {"glitch_retry_interval": 1, "transient_retry_interval": 1, "scan_interval": 0.2,
            "min_free_disk": min_free_disk}  # fmt: skip


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def small_spool(workdir: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = workdir / "queue"
    path.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(path))
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc.stderr!r}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=30)


def _fill(path: Path) -> Path:
    """Take every free byte of the file system at ``path``."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for size in (65536, 4096, 1):  # down to the last partial block
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as full:
        os.write(fd := os.open(path / "probe", os.O_WRONLY | os.O_CREAT, 0o600), b"\0" * 4096)
    os.close(fd)
    os.unlink(path / "probe")
    assert full.value.errno == errno.ENOSPC
    return filler


def _send(port: int, n: int) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
        c.ehlo("client.remote.test")
        code, text = c.mail("a@remote.test")
        if code != 250:
            return code, text
        c.rcpt("b@example.test")
        head = f"From: a@remote.test\r\nSubject: disk-{n}\r\nMessage-ID: <disk-{n}@remote.test>\r\n"
        body = head + "\r\n" + "x" * 8000 + "\r\n"
        return c.data(body)


def _until(port: int, n: int, code: int) -> tuple[int, bytes]:
    """Send until the reply is ``code``: back-pressure looks at the disk once a second."""
    deadline = time.monotonic() + 10
    while True:
        reply = _send(port, n)
        if reply[0] == code or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)


def _subjects(sink: SmtpSink, count: int) -> set[str]:
    return {
        line.split(b": ", 1)[1].decode()
        for m in sink.wait_for(count, timeout=60)
        for line in m.split(b"\n")
        if line.startswith(b"Subject: ")
    }


def test_a_full_spool_answers_452_and_recovers_when_space_returns(
    workdir: Path, sink: SmtpSink, small_spool: Path
) -> None:
    port = free_port()
    # Back-pressure off, so the write itself meets ENOSPC: the case a sudden burst or another
    # writer on the same disk causes between the MAIL check and the commit.
    config = gateway_config(workdir, port=port, sink_port=sink.port, queue=_queue(0))
    sink.stop()  # what was accepted before the disk filled waits in the queue
    with InProcessGateway(config):
        assert _send(port, 1)[0] == 250
        filler = _fill(small_spool)
        code, text = _send(port, 2)
        assert (code, text[:5]) == (452, b"4.3.1")
        # A refused message leaves nothing behind that would take space or be delivered.
        assert len(list((small_spool / "data").glob("*.eml"))) == 1
        filler.unlink()
        assert _send(port, 3)[0] == 250
        sink.start()
        assert _subjects(sink, 2) == {"disk-1", "disk-3"}


def test_a_read_only_spool_answers_452_and_recovers_when_writable(
    workdir: Path, sink: SmtpSink, small_spool: Path
) -> None:
    port = free_port()
    config = gateway_config(workdir, port=port, sink_port=sink.port, queue=_queue(0))
    with InProcessGateway(config):
        assert _send(port, 1)[0] == 250
        assert _subjects(sink, 1) == {"disk-1"}
        _mount("-o", "remount,ro", str(small_spool))
        try:
            code, text = _send(port, 2)
        finally:
            _mount("-o", "remount,rw", str(small_spool))
        assert (code, text[:5]) == (452, b"4.3.1")
        assert _send(port, 3)[0] == 250
        assert _subjects(sink, 2) == {"disk-1", "disk-3"}


def test_back_pressure_refuses_at_mail_before_the_disk_is_full(
    workdir: Path, sink: SmtpSink, small_spool: Path
) -> None:
    port = free_port()
    config = gateway_config(workdir, port=port, sink_port=sink.port, queue=_queue("1MB"))
    with InProcessGateway(config):
        assert _send(port, 1)[0] == 250
        ballast = small_spool / "ballast"
        ballast.write_bytes(b"\0" * 1536 * 1024)
        code, text = _until(port, 2, 452)
        assert (code, text[:5]) == (452, b"4.3.1")
        ballast.unlink()
        assert _until(port, 3, 250)[0] == 250
        got = _subjects(sink, 2)
        # Any message sent while the check had not yet seen the disk fill was acknowledged
        # and must have arrived as well.
        assert {"disk-1", "disk-3"} <= got <= {"disk-1", "disk-2", "disk-3"}
