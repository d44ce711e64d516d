"""The SMTP protocol log: every command and reply of a session, per connector, redacted.

Modelled on Exchange's protocol log (off by default; events ``+`` connect, ``-`` disconnect,
``<`` received, ``>`` sent, ``*`` information). Each connector that sets ``protocol_log``
writes ``<dir>/protocol-<connector>.log``; the session decides whether to call it at all.

Security: secrets never reach the log. :func:`redact` drops the initial response of
``AUTH <mechanism> <response>`` (RFC 4954 §4), and a :class:`ProtocolSession` replaces every
line the client sends while an AUTH exchange is open (after a ``334`` challenge) with
``****``: those lines carry passwords, base64-encoded. Message content (DATA) is never passed
here; only the DATA command and its replies are. Lines are cut to a bounded length.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgeward.config.schema import LoggingConfig
from edgeward.logs.rotating import RotatingJsonLog, iso_time
from edgeward.ports import Clock, SystemClock

__all__ = ["ProtocolLog", "ProtocolSession", "redact"]

REDACTED = "****"
MAX_LINE = 1000  # RFC 5321 §4.5.3.1.4: a command line is at most 512 octets; replies are short too
_AUTH = re.compile(r"^(?P<verb>AUTH)(?P<sp1>\s+)(?P<mech>\S+)(?P<rest>\s+\S.*)?$", re.IGNORECASE | re.DOTALL)


def redact(line: str) -> str:
    """A client command with any AUTH initial response replaced by ``****``."""
    m = _AUTH.match(line)
    if m and m.group("rest"):
        return f"{m.group('verb')}{m.group('sp1')}{m.group('mech')} {REDACTED}"
    return line


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

    def received(self, line: str | bytes) -> None:
        """A line from the client: a command, or a response inside an AUTH exchange."""
        text = _text(line)
        self._write("<", REDACTED if self._in_auth else redact(text))

    def sent(self, line: str | bytes) -> None:
        """A reply to the client; a ``334`` opens (or continues) an AUTH exchange, anything else ends it."""
        text = _text(line)
        self._in_auth = text.startswith("334")
        self._write(">", text)
