"""The AUTH exchange in the core: 334 continues it, any other reply ends it (RFC 4954 §4)."""

from __future__ import annotations

from edgeward.smtp import events as ev
from edgeward.smtp.connection import Extensions, ProtocolLimits, ServerConnection
from edgeward.types import Reply

CONTINUE = Reply(334, None, "")
OK = Reply(235, "2.7.0", "Authentication successful")
BAD = Reply(535, "5.7.8", "Authentication credentials invalid")


def connection() -> ServerConnection:
    conn = ServerConnection(
        ProtocolLimits(), Extensions("mx.test", 1000, starttls=True, auth_mechanisms=("PLAIN",))
    )
    conn.tls_started()
    conn.receive_data(b"EHLO c.test\r\n")
    event = conn.next_event()
    assert isinstance(event, ev.Helo)
    wire = conn.send(Reply(250, None, "mx.test"))
    assert b"AUTH PLAIN" in wire
    return conn


def test_a_334_makes_the_next_line_a_response_not_a_command() -> None:
    conn = connection()
    conn.receive_data(b"AUTH PLAIN\r\nQUIT\r\nNOOP\r\n")
    assert isinstance(conn.next_event(), ev.Auth)
    conn.send(CONTINUE)
    event = conn.next_event()
    assert event == ev.AuthResponse("QUIT")
    conn.send(BAD)
    assert isinstance(conn.next_event(), ev.Noop)  # back to commands after the 535
    assert not conn.authenticated


def test_success_marks_the_connection_and_a_second_auth_is_refused() -> None:
    conn = connection()
    conn.receive_data(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nAUTH PLAIN\r\n")
    assert isinstance(conn.next_event(), ev.Auth)
    conn.send(OK)
    assert conn.authenticated
    event = conn.next_event()
    assert isinstance(event, ev.ProtocolViolation) and event.reply.code == 503


def test_bad_response_lines_end_the_exchange() -> None:
    conn = connection()
    conn.receive_data(b"AUTH LOGIN\r\nbad\x00line\r\nNOOP\r\n")
    conn.next_event()
    conn.send(CONTINUE)
    event = conn.next_event()
    assert isinstance(event, ev.ProtocolViolation) and event.reply.code == 501
    conn.send(event.reply)
    assert isinstance(conn.next_event(), ev.Noop)


def test_an_overlong_response_gets_one_reply_and_is_skipped() -> None:
    conn = connection()
    conn.receive_data(b"AUTH LOGIN\r\n")
    conn.next_event()
    conn.send(CONTINUE)
    conn.receive_data(b"A" * 20000)
    event = conn.next_event()
    assert isinstance(event, ev.ProtocolViolation) and event.reply.enhanced == "5.5.6"
    conn.send(event.reply)
    conn.receive_data(b"AAAA\r\nNOOP\r\n")
    assert isinstance(conn.next_event(), ev.Noop)


def test_tls_restart_forgets_authentication() -> None:
    conn = connection()
    conn.receive_data(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")
    conn.next_event()
    conn.send(OK)
    conn.tls_started()
    assert not conn.authenticated


def test_requiretls_is_offered_and_accepted_only_under_tls() -> None:
    ext = Extensions("mx.test", 1000, starttls=True, requiretls=True)
    plain = ServerConnection(ProtocolLimits(), ext)
    plain.receive_data(b"EHLO c.test\r\nMAIL FROM:<a@b.test> REQUIRETLS\r\n")
    plain.next_event()
    assert b"REQUIRETLS" not in plain.send(Reply(250, None, "mx.test"))
    event = plain.next_event()
    assert isinstance(event, ev.ProtocolViolation) and event.reply.code == 555

    secure = ServerConnection(ProtocolLimits(), ext)
    secure.tls_started()
    secure.receive_data(b"EHLO c.test\r\nMAIL FROM:<a@b.test> REQUIRETLS\r\n")
    secure.next_event()
    assert b"\r\n250 REQUIRETLS\r\n" in secure.send(Reply(250, None, "mx.test"))
    mail = secure.next_event()
    assert isinstance(mail, ev.MailFrom) and ("REQUIRETLS", None) in mail.params
