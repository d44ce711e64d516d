"""The protocol log over real sockets: pipelined AUTH responses and message content never reach it.

Each case sends its secret in the same write as the command before it, the way a pipelining
client does, so the secret arrives in the socket read that carries the command.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from edgeward.auth.users import UserStore
from edgeward.state.sqlite import StateStore, default_db_path
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config, insecure_context

pytestmark = pytest.mark.e2e

USER, PASSWORD = "alice", "PASSWORD-SECRET-1"
B64_USER = base64.b64encode(USER.encode()).decode()
B64_PASSWORD = base64.b64encode(PASSWORD.encode()).decode()
B64_PLAIN = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()


class Client:
    """A raw SMTP client: exact bytes out, whole replies back."""

    def __init__(self, port: int) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=30, source_address=("127.0.0.2", 0)
        )
        self.buf = b""
        assert self.replies(1) == [220]

    def replies(self, count: int) -> list[int]:
        codes: list[int] = []
        while len(codes) < count:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                assert chunk, f"connection closed after replies {codes}"
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            if line[3:4] != b"-":
                codes.append(int(line[:3]))
        return codes

    def send(self, data: bytes, count: int) -> list[int]:
        self.sock.sendall(data)
        return self.replies(count)

    def starttls(self) -> None:
        assert self.send(b"EHLO client.test\r\n", 1) == [250]
        assert self.send(b"STARTTLS\r\n", 1) == [220]
        self.sock = insecure_context().wrap_socket(self.sock)
        assert self.send(b"EHLO client.test\r\n", 1) == [250]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _config(workdir: Path, port: int, sink: SmtpSink) -> Any:
    state = StateStore(default_db_path(workdir))
    state.connect()
    try:
        UserStore(state).add(USER, PASSWORD)
    finally:
        state.close()
    settings = {
        "auth_mechanisms": ["PLAIN", "LOGIN"], "permission_groups": ["anonymous", "users"],
        "auth_tarpit_interval": 0, "protocol_log": True,
    }  # fmt: skip
    return gateway_config(workdir, port=port, sink_port=sink.port, connector=settings)


def _log(workdir: Path) -> tuple[str, list[dict[str, Any]]]:
    text = (workdir / "log" / "protocol-internet.log").read_text()
    return text, [json.loads(line) for line in text.splitlines()]


BODY = b"From: x@remote.test\r\nSubject: DATA-SECRET\r\n\r\nDATA-SECRET in the body\r\n"
CHUNK = b"From: x@remote.test\r\nSubject: BDAT-SECRET\r\n\r\nBDAT-SECRET in the chunk\r\n"
TRANSACTION = b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<bob@example.test>\r\n"
# case: (STARTTLS first, the one write, replies expected, secrets, lines the log must hold)
CASES: dict[str, tuple[bool, bytes, list[int], tuple[str, ...], tuple[str, ...]]] = {
    "auth-login-pipelined": (
        True, f"AUTH LOGIN\r\n{B64_USER}\r\n{B64_PASSWORD}\r\nQUIT\r\n".encode(), [334, 334, 235, 221],
        (B64_USER, B64_PASSWORD), ("AUTH LOGIN", "****", "****", "QUIT"),
    ),
    "auth-plain-initial-response": (
        True, f"AUTH PLAIN {B64_PLAIN}\r\nQUIT\r\n".encode(), [235, 221],
        (B64_PLAIN,), ("AUTH PLAIN ****", "QUIT"),
    ),
    "body-before-354": (
        False, TRANSACTION + b"DATA\r\n" + BODY + b".\r\nQUIT\r\n", [250, 250, 354, 250, 221],
        ("DATA-SECRET",), ("MAIL FROM:<x@remote.test>", "RCPT TO:<bob@example.test>", "DATA", "QUIT"),
    ),
    "bdat-last-with-chunk": (
        False, TRANSACTION + b"BDAT %d LAST\r\n" % len(CHUNK) + CHUNK + b"QUIT\r\n", [250, 250, 250, 221],
        ("BDAT-SECRET",), ("MAIL FROM:<x@remote.test>", "RCPT TO:<bob@example.test>",
                           f"BDAT {len(CHUNK)} LAST", "QUIT"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_pipelined_secrets_and_content_stay_out_of_the_protocol_log(
    workdir: Path, sink: SmtpSink, case: str
) -> None:
    tls, write, codes, secrets, expected = CASES[case]
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink)):
        with Client(port) as c:
            if tls:
                c.starttls()
            else:
                assert c.send(b"EHLO client.test\r\n", 1) == [250]
            assert c.send(write, len(codes)) == codes
        if not tls:
            assert len(sink.wait_for(1)) == 1  # the message itself went through
    text, entries = _log(workdir)
    for secret in (*secrets, PASSWORD):
        assert secret not in text, secret
    received = [e["data"] for e in entries if e["dir"] == "<"]
    assert tuple(received[-len(expected) :]) == expected
    # Each command is logged before its reply.
    first = next(i for i, e in enumerate(entries) if e["data"] == expected[0])
    assert entries[first + 1]["dir"] == ">" and entries[first + 1]["data"][:3] == str(codes[0])


def test_a_password_pipelined_behind_a_refused_auth_is_not_logged(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink)):
        with Client(port) as c:  # no STARTTLS: AUTH is refused, the next lines read as commands
            assert c.send(b"EHLO client.test\r\n", 1) == [250]
            codes = c.send(f"AUTH LOGIN\r\n{B64_USER}\r\n{B64_PASSWORD}\r\nQUIT\r\n".encode(), 4)
        assert codes[0] == 530 and codes[1] >= 500 and codes[-1] == 221
    text, entries = _log(workdir)
    assert B64_USER not in text and B64_PASSWORD not in text
    assert [e["data"] for e in entries if e["dir"] == "*"] == ["input refused by the protocol core"] * 2
