"""The clock of a running ``edgeward serve`` jumping three days forward (libfaketime).

libfaketime (Debian's ``faketime``) is preloaded into the gateway's processes and reads its
offset from a file on every call, so the test moves the clock of the running gateway by
rewriting the file. It fakes the monotonic clock too (Python's sleeps fail under its
``DONT_FAKE_MONOTONIC`` mode), which the kernel never moves backwards, so only a forward jump
is realistic here; jumps back are covered with an injected clock in ``test_clock.py``.
"""

from __future__ import annotations

import json
import smtplib
import time
from pathlib import Path

import pytest

from tests.e2e.harness import GatewayProcess, SmtpSink, free_port, insecure_context
from tests.faults.kit import init_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def _send(port: int, tag: str, *, tls: bool = False) -> str:
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
        c.ehlo("client.remote.test")
        if tls:
            c.starttls(context=insecure_context())
            c.ehlo("client.remote.test")
        c.mail("a@remote.test")
        c.rcpt("b@example.test")
        head = f"From: a@remote.test\r\nSubject: {tag}\r\nMessage-ID: <{tag}@remote.test>\r\n"
        code, text = c.data(head + "\r\nx\r\n")
        assert code == 250
        return text.decode().rsplit(" ", 1)[-1]


def _events(root: Path, event: str, msg_id: str) -> list[dict[str, object]]:
    path = root / "gw" / "log" / "tracking-delivery.log"
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in lines if e.get("event") == event and e.get("msg_id") == msg_id]


def _wait(root: Path, event: str, msg_id: str, timeout: float = 60) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while not (found := _events(root, event, msg_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


@pytest.mark.skipif(
    not LIBFAKETIME.exists(), reason="libfaketime is not installed (apt-get install faketime)"
)
def test_a_forward_jump_expires_deferred_mail_once_and_the_gateway_keeps_working(
    workdir: Path, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    config = init_gateway(workdir, port, sink.port)
    sink.stop()  # the first message waits in the queue
    offset = workdir / "faketime"
    offset.write_text("+0d\n")
    offset.chmod(0o644)  # the gateway reads it as its service user
    monkeypatch.setenv("LD_PRELOAD", str(LIBFAKETIME))
    monkeypatch.setenv("FAKETIME_TIMESTAMP_FILE", str(offset))
    monkeypatch.setenv("FAKETIME_NO_CACHE", "1")
    gw = GatewayProcess(config, port).start()
    try:
        first = _send(port, "before-jump")
        assert _wait(workdir, "DEFER", first), "the first attempt deferred"
        offset.write_text("+3d\n")  # past the two-day expiry
        expired = _wait(workdir, "EXPIRE", first)
        assert len(expired) == 1
        sink.start()
        second = _send(port, "after-jump", tls=True)
        assert any(b"Subject: after-jump" in m for m in sink.wait_for(1))
        assert _wait(workdir, "SEND", second)
        # Expired once: the message is gone from the queue, so no second EXPIRE follows.
        assert len(_events(workdir, "EXPIRE", first)) == 1
        assert not any(b"Subject: before-jump" in m.split(b"\n\n", 1)[0] for m in sink.messages())
    finally:
        gw.stop()
