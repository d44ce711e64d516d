"""A message past the inline budget goes to a spool file as it arrives, over real SMTP.

Checked against a running gateway on loopback: a message larger than the whole byte budget is
still accepted (the budget counts only what memory holds), its spool copy is the message byte
for byte under the gateway's stamps, and no file is left in ``tmp/`` whether the message was
committed, refused at end of data, or cut off mid-way by the client.
"""

from __future__ import annotations

import hashlib
import random
import smtplib
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from edgeward.headers import header_end
from tests.e2e.harness import InProcessGateway, free_port, gateway_config

pytestmark = pytest.mark.e2e

SIZE = 3 * 1024 * 1024


@contextmanager
def _gateway(workdir: Path, **server: Any) -> Iterator[InProcessGateway]:
    extra = {
        "server": {
            "hostname": "mx.example.test",
            "data_dir": str(workdir),
            "user": "edgeward",
            "shutdown_grace": 5,
            **server,
        }
    }
    config = gateway_config(workdir, port=free_port(), **extra)
    with InProcessGateway(config) as gw:
        yield gw


def _port(gw: InProcessGateway) -> int:
    return int(gw.config.receive_connectors[0].bindings[0].rsplit(":", 1)[1])


def _message(size: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    head = (
        b"From: <a@remote.test>\r\nTo: <b@example.test>\r\nSubject: spilled\r\n"
        b"X-Edgeward-SCL: -1\r\nMessage-ID: <spill%d@remote.test>\r\n\r\n" % seed
    )
    lines = []
    total = len(head)
    while total < size:
        # Dot-led lines (unstuffed on DATA) and long lines, so the piece edges fall everywhere.
        line = (
            (b"." if rnd.random() < 0.1 else b"")
            + rnd.randbytes(rnd.randint(1, 300)).hex().encode()
            + b"\r\n"
        )
        lines.append(line)
        total += len(line)
    return head + b"".join(lines)


def _tmp_files(gw: InProcessGateway) -> list[str]:
    assert gw.gateway is not None
    return sorted(p.name for p in gw.gateway.spool._tmp.iterdir())


def _queued_id(text: bytes) -> str:
    return text.decode().rsplit(" ", 1)[-1]


def test_a_message_larger_than_the_byte_budget_is_accepted_intact(workdir: Path) -> None:
    message = _message(SIZE, 1)
    with _gateway(workdir, max_bytes_in_flight=1024 * 1024) as gw:
        with smtplib.SMTP("127.0.0.1", _port(gw), timeout=60) as c:
            c.ehlo("client.remote.test")
            c.mail("a@remote.test", [f"SIZE={len(message)}"])
            c.rcpt("b@example.test")
            code, text = c.data(message)
        assert code == 250, text
        assert gw.gateway is not None
        stored = gw.gateway.spool.read_data(_queued_id(text))
        assert _tmp_files(gw) == []
    # The forged internal field is gone, the stamps are on top; the body is untouched.
    body = message[header_end(message) :]
    assert hashlib.sha256(stored[header_end(stored) :]).digest() == hashlib.sha256(body).digest()
    assert b"X-Edgeward-SCL: -1" not in stored
    assert stored.startswith(b"Received: ")


def test_bdat_message_past_the_budget_is_accepted_intact(workdir: Path) -> None:
    message = _message(SIZE, 2)
    with _gateway(workdir) as gw:
        with socket.create_connection(("127.0.0.1", _port(gw)), timeout=60) as s, s.makefile("rb") as f:
            assert f.readline().startswith(b"220")
            s.sendall(b"EHLO client.remote.test\r\n")
            while not f.readline().startswith(b"250 "):
                pass
            s.sendall(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<b@example.test>\r\n")
            assert f.readline().startswith(b"250") and f.readline().startswith(b"250")
            half = len(message) // 2
            s.sendall(b"BDAT %d\r\n" % half + message[:half])
            assert f.readline().startswith(b"250")
            s.sendall(b"BDAT %d LAST\r\n" % (len(message) - half) + message[half:])
            reply = f.readline()
            assert reply.startswith(b"250"), reply
        assert gw.gateway is not None
        stored = gw.gateway.spool.read_data(_queued_id(reply.strip()))
        assert _tmp_files(gw) == []
    assert stored.endswith(message[header_end(message) :])


def test_refused_and_abandoned_messages_leave_no_file(workdir: Path) -> None:
    with _gateway(workdir) as gw:
        with smtplib.SMTP("127.0.0.1", _port(gw), timeout=60) as c:
            c.ehlo("client.remote.test")
            c.mail("a@remote.test")
            c.rcpt("b@example.test")
            # A NUL far past the inline budget: found piece by piece, refused at the end.
            bad = _message(SIZE, 3) + b"tail \x00 here\r\n"
            code, _ = c.data(bad)
            assert code == 550
        assert _tmp_files(gw) == []
        # The file object holds the socket open: both are closed to hang up.
        with socket.create_connection(("127.0.0.1", _port(gw)), timeout=60) as s, s.makefile("rb") as f:
            f.readline()
            s.sendall(
                b"EHLO client.remote.test\r\nMAIL FROM:<a@remote.test>\r\n"
                b"RCPT TO:<b@example.test>\r\nDATA\r\n"
            )
            while not f.readline().startswith(b"354"):
                pass
            s.sendall(_message(SIZE, 4))  # no terminator: the client goes away mid-message
            deadline = time.monotonic() + 10
            while not _tmp_files(gw) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _tmp_files(gw), "the message should be on its way into a spool file"
        deadline = time.monotonic() + 10
        while _tmp_files(gw) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _tmp_files(gw) == []
