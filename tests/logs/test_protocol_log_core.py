"""The protocol log's view of the sans-IO core: what each event renders as, whatever the reads.

Pipelined input is fed in one piece and in 1, 2, 3 and 7-byte pieces (the transcript
discipline of tests/smtp); the log lines must be the same every time and hold no secret.
"""

from __future__ import annotations

import pytest

from edgeward.logs.protocol import command_text
from edgeward.smtp import events as ev
from edgeward.smtp.connection import Extensions, ProtocolLimits, ServerConnection
from edgeward.types import Reply

SECRET_USER = "YWxpY2U="  # base64 "alice"
SECRET_PASSWORD = "aHVudGVyMg=="  # base64 "hunter2"
INPUT = (
    b"EHLO client.test\r\n"
    b"AUTH LOGIN\r\n" + SECRET_USER.encode() + b"\r\n" + SECRET_PASSWORD.encode() + b"\r\n"
    b"MAIL FROM:<a@remote.test> BODY=8BITMIME\r\nRCPT TO:<b@example.test>\r\n"
    b"DATA\r\nSubject: BODY-SECRET\r\n\r\nBODY-SECRET\r\n.\r\n"
    b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<b@example.test>\r\n"
    b"BDAT 12\r\nCHUNK-SECRET"
    b"BDAT 6 LAST\r\nLAST-S"
    b"QUIT\r\n"
)
EXPECTED = [
    "EHLO client.test", "AUTH LOGIN", "****", "****",
    "MAIL FROM:<a@remote.test> BODY=8BITMIME", "RCPT TO:<b@example.test>", "DATA",
    "MAIL FROM:<a@remote.test>", "RCPT TO:<b@example.test>", "BDAT 12", "BDAT 6 LAST", "QUIT",
]  # fmt: skip


def _answer(event: object) -> Reply:
    match event:
        case ev.Auth():
            return Reply(334, None, "VXNlcm5hbWU6")
        case ev.AuthResponse(line=line) if line == SECRET_USER:
            return Reply(334, None, "UGFzc3dvcmQ6")
        case ev.AuthResponse():
            return Reply(235, "2.7.0", "Authentication successful")
        case ev.Data():
            return Reply(354, None, "go ahead")
        case ev.Quit():
            return Reply(221, "2.0.0", "Bye")
    return Reply(250, "2.0.0", "OK")


def _connection() -> ServerConnection:
    extensions = Extensions(
        hostname="mx.test", size=10**6, starttls=False, auth_mechanisms=("LOGIN",), auth_before_tls=True
    )
    conn = ServerConnection(ProtocolLimits(), extensions)
    conn.greeting(Reply(220, None, "mx.test"))
    return conn


def _log_lines(pieces: list[bytes]) -> list[str]:
    conn = _connection()
    lines: list[str] = []
    feed = iter(pieces)
    while not conn.closed:
        event = conn.next_event()
        if isinstance(event, ev.NeedData):
            conn.receive_data(next(feed, b""))
            continue
        if isinstance(event, ev.ConnectionClosed):
            break
        text = command_text(event, conn.pending_chunk)
        if text is not None:
            lines.append(text)
        conn.send(_answer(event))
    return lines


@pytest.mark.parametrize("split", [0, 1, 2, 3, 7])
def test_pipelined_session_logs_commands_only(split: int) -> None:
    pieces = [INPUT] if not split else [INPUT[i : i + split] for i in range(0, len(INPUT), split)]
    lines = _log_lines(pieces)
    assert lines == EXPECTED
    for secret in (SECRET_USER, SECRET_PASSWORD, "BODY-SECRET", "CHUNK-SECRET", "LAST-S"):
        assert not any(secret in line for line in lines)


def test_pending_chunk_is_only_reported_for_bdat_events() -> None:
    conn = _connection()
    conn.receive_data(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT 3\r\nabc")
    for kind in (ev.Helo, ev.MailFrom, ev.RcptTo):
        event = conn.next_event()
        assert isinstance(event, kind) and conn.pending_chunk is None
        conn.send(_answer(event))
    assert isinstance(conn.next_event(), ev.BdatChunk) and conn.pending_chunk == (3, False)
    conn.send(Reply(250, "2.0.0", "3 octets received"))
    assert conn.pending_chunk is None
