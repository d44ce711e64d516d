"""A large message crosses a real ``edgeward serve`` byte for byte, by DATA and by BDAT.

The receiving side hands the message on with as few copies as it can (the DATA buffer emptied
as it is unstuffed, header edits joined onto a view of the body, the agents' parse and walk
released before the spool's commit); this checks that none of that changes a byte. The body
has dot-led lines (unstuffed on DATA, not on BDAT), an internal header the gateway strips, and
is compared by SHA-256 at smtp-sink, which dumps with LF line ends.

The gateway's byte budget (``max_bytes_in_flight``) is a third of the message: past the inline
budget a message is written to a spool file as it arrives, so it is still received whole and
delivered intact.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import GatewayProcess, SmtpSink, free_port

SIZE = 6 * 1024 * 1024


def write_config(root: Path, port: int, sink: SmtpSink) -> Path:
    path = root / "edgeward.toml"
    path.write_text(
        f"""accepted_domains = ["example.test"]
[server]
hostname = "mx.example.test"
data_dir = "{root}"
user = "edgeward"
shutdown_grace = 5
max_bytes_in_flight = {SIZE // 3}
[queue]
fsync = true
scan_interval = 0.2
[[receive_connectors]]
name = "relay"
bindings = ["127.0.0.1:{port}"]
remote_ranges = ["127.0.0.1/32"]
permissions = ["submit", "relay"]
tarpit_interval = 0
[[send_connectors]]
name = "out"
address_spaces = ["*"]
smart_hosts = ["127.0.0.1:{sink.port}"]
[spf]
enabled = false
[dmarc]
enabled = false
"""
    )
    return path


@pytest.fixture
def served(workdir: Path, sink: SmtpSink) -> Iterator[int]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the gateway drops to its service user")
    try:
        pwd.getpwnam("edgeward")
    except KeyError:
        pytest.skip("no 'edgeward' user")
    port = free_port()
    gw = GatewayProcess(write_config(workdir, port, sink), port).start()
    try:
        yield port
    finally:
        assert gw.stop() == 0


def large_message(tag: str) -> tuple[bytes, bytes]:
    """(message, body): every fifth line starts with a dot, one ends with trailing spaces."""
    head = (
        f"From: <a@client.test>\r\nTo: <b@example.test>\r\nSubject: large {tag}\r\n"
        f"Message-ID: <large-{tag}@client.test>\r\nX-Edgeward-Test: stripped on the way in\r\n\r\n"
    ).encode()
    lines = []
    n = total = 0
    while total < SIZE:  # a running total: summing the lines each time was quadratic
        lead = b"." if n % 5 == 0 else b""
        lines.append(lead + f"{tag} {n:07d} ".encode() + hashlib.sha256(str(n).encode()).hexdigest().encode())
        lines[-1] += b"   \r\n" if n % 97 == 0 else b"\r\n"
        total += len(lines[-1])
        n += 1
    body = b"".join(lines)
    return head + body, body


def body_at_sink(dump: bytes) -> bytes:
    """The body of a dump, without the empty line smtp-sink writes after each message."""
    body = dump.split(b"\n\n", 1)[1]
    assert body.endswith(b"\n\n")
    return body[:-1]


def send_bdat(port: int, message: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        f = s.makefile("rb")

        def reply() -> bytes:
            while (line := f.readline())[3:4] == b"-":
                pass
            return line

        assert reply().startswith(b"220")
        for command in (b"EHLO client.test", b"MAIL FROM:<a@client.test>", b"RCPT TO:<b@example.test>"):
            s.sendall(command + b"\r\n")
            assert reply().startswith(b"250"), command
        half = len(message) // 2
        s.sendall(b"BDAT %d\r\n" % half + message[:half])
        assert reply().startswith(b"250")
        s.sendall(b"BDAT %d LAST\r\n" % (len(message) - half) + message[half:])
        last = reply()
        s.sendall(b"QUIT\r\n")
        return last


def test_large_message_by_data_and_bdat_arrives_intact(served: int, sink: SmtpSink) -> None:
    by_data, data_body = large_message("data")
    by_bdat, bdat_body = large_message("bdat")
    with smtplib.SMTP("127.0.0.1", served, timeout=60) as c:
        c.ehlo("client.test")
        c.mail("a@client.test", [f"SIZE={len(by_data)}"])
        c.rcpt("b@example.test")
        code, text = c.data(by_data)
        assert code == 250, text
    assert send_bdat(served, by_bdat).startswith(b"250")
    dumps = sink.wait_for(2, timeout=120)
    want = {hashlib.sha256(b.replace(b"\r\n", b"\n")).hexdigest() for b in (data_body, bdat_body)}
    got = {hashlib.sha256(body_at_sink(d)).hexdigest() for d in dumps}
    assert got == want
    for dump in dumps:
        assert b"X-Edgeward-Test" not in dump.split(b"\n\n", 1)[0]
