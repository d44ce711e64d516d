"""Golden SMTP transcripts: a tiny file format and the driver that plays the session's part.

Format (one item per line; blank lines and lines starting with ``#`` are ignored)::

    @limits max_recipients=2 bare_lf=normalize      (before the first C: line)
    @extensions starttls=false auth_mechanisms=PLAIN,LOGIN
    @greeting 554 5.7.1 No service for you           (default: 220 mx.example.net ESMTP)
    C: EHLO client.example          client bytes, CRLF appended
    C~ DATA\\n                        client bytes, nothing appended
    S: 250-mx.example.net ...       one expected server reply line (escaped, CRLF implied)
    M: Subject: x\\r\\n\\r\\nbody\\r\\n    the next message the session receives (escaped)
    !tls                            the TLS handshake succeeded: call tls_started()
    !eof                            the client closes its side
    ? state=greeted closed=false tls=true    assertions on the connection

Consecutive ``C:``/``C~`` lines are one write (that is how pipelining is tested); the ``S:`` lines
after them are every byte the server sends in answer to that write. Escapes in C:/C~/S:/M: lines:
``\\r`` ``\\n`` ``\\t`` ``\\0`` ``\\\\`` and ``\\xHH``.

The driver answers like a plausible session: 250 to HELO/EHLO/MAIL/RCPT/RSET/NOOP, 354 to DATA,
``250 2.0.0 Queued N octets`` to a message, the violation's own reply to a violation, 221 to QUIT,
220 to STARTTLS, 252 to VRFY, 214 to HELP, 502 to AUTH. The MAIL/RCPT replies quote the parsed
address and parameters so a transcript shows what the parser made of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from edgeward.smtp import (
    Auth,
    BdatChunk,
    ConnectionClosed,
    Data,
    Event,
    Extensions,
    Helo,
    Help,
    MailFrom,
    MessageData,
    NeedData,
    Noop,
    ProtocolLimits,
    ProtocolViolation,
    Quit,
    RcptTo,
    Rset,
    ServerConnection,
    StartTls,
    Vrfy,
)
from edgeward.types import Reply

HOSTNAME = "mx.example.net"
DEFAULT_EXTENSIONS = Extensions(hostname=HOSTNAME, size=10 * 1024 * 1024, starttls=True)
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|[rnt0\\])")
_SIMPLE = {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"0": b"\x00", b"\\": b"\\"}


def unescape(text: str) -> bytes:
    def one(m: re.Match[bytes]) -> bytes:
        code = m.group(1)
        return bytes([int(code[1:], 16)]) if code[:1] == b"x" else _SIMPLE[code]

    return _ESCAPE.sub(one, text.encode("utf-8"))


def escape(data: bytes) -> str:
    out = []
    for b in data:
        c = bytes([b])
        if c == b"\r":
            out.append("\\r")
        elif c == b"\n":
            out.append("\\n")
        elif c == b"\\":
            out.append("\\\\")
        elif 32 <= b < 127:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def _coerce(template: Any, value: str) -> Any:
    if isinstance(template, bool):
        return value.lower() in ("1", "true", "yes")
    if isinstance(template, int):
        return int(value)
    if isinstance(template, tuple):
        return tuple(v for v in value.split(",") if v)
    return value


def _configure(obj: Any, words: list[str]) -> Any:
    known = {f.name for f in fields(obj)}
    changes = {}
    for word in words:
        key, _, value = word.partition("=")
        assert key in known, f"unknown setting {key}"
        changes[key] = _coerce(getattr(obj, key), value)
    return replace(obj, **changes)


def answer(event: Event) -> Reply:
    """The reply a plausible session gives to each event."""
    if isinstance(event, Helo):
        return Reply(250, None, HOSTNAME if event.esmtp else f"{HOSTNAME} Hello {event.name}")
    if isinstance(event, MailFrom):
        extra = "".join(f" {k}={v}" if v is not None else f" {k}" for k, v in event.params)
        route = " (source route dropped)" if event.source_route else ""
        return Reply(250, "2.1.0", f"Sender <{event.address}> OK{route}{extra}")
    if isinstance(event, RcptTo):
        extra = "".join(f" {k}={v}" if v is not None else f" {k}" for k, v in event.params)
        route = " (source route dropped)" if event.source_route else ""
        return Reply(250, "2.1.5", f"Recipient <{event.address}> OK{route}{extra}")
    if isinstance(event, Data):
        return Reply(354, None, "End data with <CR><LF>.<CR><LF>")
    if isinstance(event, MessageData):
        if event.violation is not None:
            return event.violation
        return Reply(250, "2.0.0", f"Queued {len(event.data)} octets")
    if isinstance(event, BdatChunk):
        return Reply(250, "2.0.0", f"{event.size} octets received")
    if isinstance(event, Rset | Noop):
        return Reply(250, "2.0.0", "OK")
    if isinstance(event, Quit):
        return Reply(221, "2.0.0", "Bye")
    if isinstance(event, StartTls):
        return Reply(220, "2.0.0", "Ready to start TLS")
    if isinstance(event, Vrfy):
        return Reply(252, "2.5.0", f"Cannot VRFY {event.argument}")
    if isinstance(event, Help):
        return Reply(214, "2.0.0", "See RFC 5321")
    if isinstance(event, Auth):
        return Reply(502, "5.5.1", f"AUTH {event.mechanism} not available")
    if isinstance(event, ProtocolViolation):
        return event.reply
    raise AssertionError(f"unexpected event {event!r}")


@dataclass
class Driver:
    """Plays the session: feeds bytes, answers every event, collects what was sent."""

    conn: ServerConnection
    events: list[Event] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)

    def pump(self) -> bytes:
        out = bytearray()
        while not self.conn.closed:
            event = self.conn.next_event()
            if isinstance(event, NeedData):
                return bytes(out)
            self.events.append(event)
            if isinstance(event, ConnectionClosed):
                return bytes(out)
            if isinstance(event, MessageData) and event.violation is None:
                self.messages.append(event.data)
            out += self.conn.send(answer(event))
        return bytes(out)

    def write(self, data: bytes, split: int = 0) -> bytes:
        """Feed ``data`` whole (``split=0``) or in pieces of ``split`` bytes, pumping after each.

        Empty ``data`` is not fed (``b""`` would mean EOF).
        """
        if not data:
            return self.pump()
        if not split:
            self.conn.receive_data(data)
            return self.pump()
        out = bytearray()
        for i in range(0, len(data), split):
            self.conn.receive_data(data[i : i + split])
            out += self.pump()
        return bytes(out)


@dataclass
class Step:
    kind: str  # "write", "tls", "eof", "check"
    data: bytes = b""
    expect: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass
class Transcript:
    name: str
    limits: ProtocolLimits
    extensions: Extensions
    greeting: Reply
    steps: list[Step]


def load(path: Path) -> Transcript:
    limits = ProtocolLimits()
    extensions = DEFAULT_EXTENSIONS
    greeting = Reply(220, None, f"{HOSTNAME} ESMTP")
    steps: list[Step] = []
    current: Step | None = None
    for number, raw in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not raw.strip() or raw.startswith("#"):
            continue
        tag, rest = raw[:2], raw[3:] if len(raw) > 2 else ""
        if raw.startswith("@limits "):
            limits = _configure(limits, raw.split()[1:])
        elif raw.startswith("@extensions "):
            extensions = _configure(extensions, raw.split()[1:])
        elif raw.startswith("@greeting "):
            code, enhanced, *text = raw.split(" ")[1:]
            greeting = Reply(int(code), enhanced if enhanced != "-" else None, " ".join(text))
        elif tag in ("C:", "C~"):
            if current is None or current.expect or current.messages:
                current = Step("write", line=number)
                steps.append(current)
            current.data += unescape(rest) + (b"\r\n" if tag == "C:" else b"")
        elif tag == "S:":
            assert current is not None, f"{path.name}:{number}: S: before any C:"
            current.expect.append(rest)
        elif tag == "M:":
            assert current is not None, f"{path.name}:{number}: M: before any C:"
            current.messages.append(unescape(rest))
        elif raw.strip() in ("!tls", "!eof"):
            current = None
            steps.append(Step(raw.strip()[1:], line=number))
        elif raw.startswith("? "):
            current = None
            checks = dict(word.partition("=")[::2] for word in raw[2:].split())
            steps.append(Step("check", checks=checks, line=number))
        else:
            raise AssertionError(f"{path.name}:{number}: cannot read {raw!r}")
    return Transcript(path.stem, limits, extensions, greeting, steps)


def play(transcript: Transcript, split: int = 0) -> Driver:
    """Run a transcript, asserting every expectation; return the driver for more checks."""
    conn = ServerConnection(transcript.limits, transcript.extensions)
    driver = Driver(conn)
    conn.greeting(transcript.greeting)
    for step in transcript.steps:
        where = f"{transcript.name}:{step.line}"
        if step.kind == "write":
            before = len(driver.messages)
            got = driver.write(step.data, split)
            want = b"".join(unescape(line) + b"\r\n" for line in step.expect)
            assert got == want, f"{where}\n--- got:\n{escape(got)}\n--- want:\n{escape(want)}"
            if step.messages:
                assert driver.messages[before:] == step.messages, f"{where}: {driver.messages[before:]!r}"
        elif step.kind == "tls":
            conn.tls_started()
            if transcript.extensions.starttls:
                conn.extensions = replace(conn.extensions, starttls=False)
        elif step.kind == "eof":
            conn.receive_data(b"")
            driver.pump()
        else:
            actual = {
                "state": conn.state.value,
                "closed": str(conn.closed).lower(),
                "tls": str(conn.tls_active).lower(),
                "messages": str(len(driver.messages)),
            }
            for key, value in step.checks.items():
                assert actual[key] == value, f"{where}: {key} is {actual[key]}, expected {value}"
    return driver


def transcripts(folder: Path) -> Iterable[Path]:
    return sorted(folder.glob("*.smtp"))
