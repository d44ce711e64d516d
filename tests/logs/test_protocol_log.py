"""The protocol log: one line per command and reply, with AUTH secrets redacted."""

from __future__ import annotations

import base64
from pathlib import Path

from edgeward.config.schema import LoggingConfig
from edgeward.logs.protocol import REDACTED, ProtocolLog, command_text, redact
from edgeward.logs.rotating import read_entries
from edgeward.smtp import events as ev
from edgeward.types import Address, Reply

SECRET = base64.b64encode(b"\0alice\0hunter2").decode()


def test_redact_drops_an_auth_initial_response() -> None:
    assert redact(f"AUTH PLAIN {SECRET}") == f"AUTH PLAIN {REDACTED}"
    assert redact(f"auth  login {SECRET}") == f"auth  login {REDACTED}"
    assert redact("AUTH LOGIN") == "AUTH LOGIN"
    assert redact("MAIL FROM:<a@example.org>") == "MAIL FROM:<a@example.org>"


def test_a_session_is_logged_in_order_without_secrets(tmp_path: Path) -> None:
    log = ProtocolLog(tmp_path, LoggingConfig(), "Default Frontend/1")
    s = log.session("S1", "192.0.2.7")
    s.connected("192.0.2.7:40000 -> 192.0.2.1:25")
    s.sent("220 gw.example.org ESMTP ready")
    s.received(b"EHLO client.example\r\n")
    s.sent("250 gw.example.org")
    s.received("AUTH LOGIN")
    s.sent("334 VXNlcm5hbWU6")
    s.received(base64.b64encode(b"alice").decode())
    s.sent("334 UGFzc3dvcmQ6")
    s.received(base64.b64encode(b"hunter2").decode())
    s.sent("235 2.7.0 Authentication successful")
    s.received(f"AUTH PLAIN {SECRET}")
    s.sent("503 5.5.1 Already authenticated")
    s.received("QUIT")
    s.disconnected()
    log.close()
    (path,) = tmp_path.iterdir()
    assert path.name == "protocol-Default_Frontend_1.log"
    text = path.read_text()
    for secret in (SECRET, base64.b64encode(b"alice").decode(), base64.b64encode(b"hunter2").decode()):
        assert secret not in text
    entries = list(read_entries(tmp_path, "protocol-Default_Frontend_1"))
    assert [e["seq"] for e in entries] == list(range(14))
    assert [e["dir"] for e in entries][:3] == ["+", ">", "<"]
    assert entries[2]["data"] == "EHLO client.example"
    assert [e["data"] for e in entries if e["dir"] == "<"][2:5] == [
        REDACTED,
        REDACTED,
        f"AUTH PLAIN {REDACTED}",
    ]
    assert entries[-2]["data"] == "QUIT"  # logging resumes once the AUTH exchange ends
    assert {e["session_id"] for e in entries} == {"S1"} and {e["client_ip"] for e in entries} == {"192.0.2.7"}


def test_long_lines_are_cut(tmp_path: Path) -> None:
    log = ProtocolLog(tmp_path, LoggingConfig(), "c")
    log.session("S", "::1").received("NOOP " + "x" * 5000)
    log.close()
    (entry,) = read_entries(tmp_path, "protocol-c")
    assert len(entry["data"]) < 1100


def test_commands_are_rendered_from_events_with_secrets_redacted() -> None:
    assert command_text(ev.Helo("client.test", True)) == "EHLO client.test"
    assert command_text(ev.Helo("client.test", False)) == "HELO client.test"
    mail = ev.MailFrom(Address("a", "example.org"), (("SIZE", "10"), ("SMTPUTF8", None)))
    assert command_text(mail) == "MAIL FROM:<a@example.org> SIZE=10 SMTPUTF8"
    assert command_text(ev.MailFrom(Address.null())) == "MAIL FROM:<>"
    assert command_text(ev.RcptTo(Address("b", "example.test"))) == "RCPT TO:<b@example.test>"
    assert command_text(ev.Auth("PLAIN", SECRET)) == f"AUTH PLAIN {REDACTED}"
    assert command_text(ev.Auth("LOGIN")) == "AUTH LOGIN"
    assert command_text(ev.AuthResponse(SECRET)) == REDACTED
    assert command_text(ev.Data()) == "DATA"
    assert command_text(ev.MessageData(b"Subject: secret\r\n\r\nbody\r\n")) is None
    assert command_text(ev.BdatChunk(5), (5, False)) == "BDAT 5"
    assert command_text(ev.MessageData(b"secret"), (6, True)) == "BDAT 6 LAST"
    assert command_text(ev.ProtocolViolation(Reply(500, "5.5.2", "x"))) is None
    assert [command_text(e) for e in (ev.Rset(), ev.Noop(), ev.Quit(), ev.StartTls())] == [
        "RSET", "NOOP", "QUIT", "STARTTLS",
    ]  # fmt: skip
    assert command_text(ev.Vrfy("root")) == "VRFY root" and command_text(ev.Help()) == "HELP"


def test_refused_input_is_logged_as_a_fact_not_as_its_text(tmp_path: Path) -> None:
    log = ProtocolLog(tmp_path, LoggingConfig(), "c")
    log.session("S", "::1").command(ev.ProtocolViolation(Reply(500, "5.5.2", "Syntax error")))
    log.close()
    (entry,) = read_entries(tmp_path, "protocol-c")
    assert (entry["dir"], entry["data"]) == ("*", "input refused by the protocol core")
