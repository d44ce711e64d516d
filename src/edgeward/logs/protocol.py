"""The SMTP protocol log: every command and reply of a session, per connector, redacted.

Modelled on Exchange's protocol log (off by default; events ``+`` connect, ``-`` disconnect,
``<`` received, ``>`` sent, ``*`` information). Each connector that sets ``protocol_log``
writes ``<dir>/protocol-<connector>.log``; the session decides whether to call it at all.

What the client sent is logged per command, as the SMTP core parsed it
(:meth:`ProtocolSession.command`, rendered by :func:`command_text`), never as the bytes of a
socket read: a read can hold a command, the AUTH response pipelined behind it and the message
body pipelined behind DATA, and only the parser knows where one ends and the next begins.

Security (CWE-532): secrets and content never reach the log. ``AUTH`` is logged with its
mechanism only (an initial response, RFC 4954 §4, becomes ``****``); every AUTH response line
is ``****``; DATA and BDAT content is never logged (``BDAT n [LAST]`` is the command); input
the core refused is logged as the fact of a refusal, not its text, since it may be a password
pipelined behind an AUTH that was refused. :func:`redact` and :meth:`ProtocolSession.received`
remain for raw lines from elsewhere. Lines are cut to a bounded length.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgeward.config.schema import LoggingConfig
from edgeward.logs.rotating import RotatingJsonLog, iso_time
from edgeward.ports import Clock, SystemClock
from edgeward.smtp import events as ev

__all__ = ["ProtocolLog", "ProtocolSession", "command_text", "redact"]

REDACTED = "****"
MAX_LINE = 1000  # RFC 5321 §4.5.3.1.4: a command line is at most 512 octets; replies are short too
_AUTH = re.compile(r"^(?P<verb>AUTH)(?P<sp1>\s+)(?P<mech>\S+)(?P<rest>\s+\S.*)?$", re.IGNORECASE | re.DOTALL)


def redact(line: str) -> str:
    """A client command with any AUTH initial response replaced by ``****``."""
    m = _AUTH.match(line)
    if m and m.group("rest"):
        return f"{m.group('verb')}{m.group('sp1')}{m.group('mech')} {REDACTED}"
    return line


def _params(params: ev.Params) -> str:
    return "".join(f" {k}" if v is None else f" {k}={v}" for k, v in params)


def command_text(event: object, chunk: tuple[int, bool] | None = None) -> str | None:
    """The client's command behind ``event``, secrets redacted; None for a DATA body's end.

    ``chunk`` is the (size, last) the core reports for a BDAT event.
    """
    if chunk is not None and isinstance(event, ev.MessageData | ev.BdatChunk | ev.ProtocolViolation):
        return f"BDAT {chunk[0]}{' LAST' if chunk[1] else ''}"
    match event:
        case ev.Helo(name=name, esmtp=esmtp):
            return f"{'EHLO' if esmtp else 'HELO'} {name}"
        case ev.MailFrom(address=address, params=params):
            return f"MAIL FROM:{address.bracketed()}{_params(params)}"
        case ev.RcptTo(address=address, params=params):
            return f"RCPT TO:{address.bracketed()}{_params(params)}"
        case ev.Auth(mechanism=mechanism, initial=initial):
            return f"AUTH {mechanism}" + ("" if initial is None else f" {REDACTED}")
        case ev.AuthResponse():
            return REDACTED
        case ev.Vrfy(argument=argument):
            return f"VRFY {argument}"
        case ev.Help(argument=argument):
            return f"HELP {argument}".rstrip()
        case ev.MessageData() | ev.ProtocolViolation() | ev.ConnectionClosed():
            return None
    return {
        ev.Data: "DATA", ev.Rset: "RSET", ev.Noop: "NOOP", ev.Quit: "QUIT", ev.StartTls: "STARTTLS",
    }.get(type(event))  # fmt: skip


def _text(line: str | bytes) -> str:
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.rstrip("\r\n")
    return line if len(line) <= MAX_LINE else line[:MAX_LINE] + "..."


class ProtocolLog:
    """The protocol log of one receive (or send) connector."""

    def __init__(
        self, directory: Path, cfg: LoggingConfig, connector: str, *, clock: Clock | None = None
    ) -> None:
        self.connector = connector
        self._clock = clock if clock is not None else SystemClock()
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", connector) or "_"
        self._log = RotatingJsonLog(
            directory,
            f"protocol-{safe}",
            max_file_size=cfg.max_file_size,
            max_age=cfg.max_age,
            clock=self._clock,
        )

    def session(self, session_id: str, client_ip: str) -> ProtocolSession:
        return ProtocolSession(self, session_id, client_ip)

    def write(self, session_id: str, client_ip: str, seq: int, direction: str, data: str) -> None:
        self._log.write(
            {
                "time": iso_time(self._clock.now()),
                "connector": self.connector,
                "session_id": session_id,
                "seq": seq,
                "client_ip": client_ip,
                "dir": direction,
                "data": data,
            }
        )

    def close(self) -> None:
        self._log.close()


class ProtocolSession:
    """Numbers the lines of one session and tracks whether an AUTH exchange is open."""

    def __init__(self, log: ProtocolLog, session_id: str, client_ip: str) -> None:
        self._log = log
        self.session_id = session_id
        self.client_ip = client_ip
        self._seq = 0
        self._in_auth = False

    def _write(self, direction: str, data: str) -> None:
        self._log.write(self.session_id, self.client_ip, self._seq, direction, data)
        self._seq += 1

    def connected(self, detail: str = "") -> None:
        self._write("+", _text(detail))

    def disconnected(self, detail: str = "") -> None:
        self._write("-", _text(detail))

    def info(self, detail: str) -> None:
        self._write("*", _text(detail))

    def command(self, event: object, chunk: tuple[int, bool] | None = None) -> None:
        """The command the core parsed into ``event`` (see :func:`command_text`)."""
        text = command_text(event, chunk)
        if text is not None:
            self._write("<", _text(text))
        elif isinstance(event, ev.ProtocolViolation):
            self._write("*", "input refused by the protocol core")

    def received(self, line: str | bytes) -> None:
        """A line from the client: a command, or a response inside an AUTH exchange."""
        text = _text(line)
        self._write("<", REDACTED if self._in_auth else redact(text))

    def sent(self, line: str | bytes) -> None:
        """A reply to the client; a ``334`` opens (or continues) an AUTH exchange, anything else ends it."""
        text = _text(line)
        self._in_auth = text.startswith("334")
        self._write(">", text)
