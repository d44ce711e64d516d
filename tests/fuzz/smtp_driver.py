"""A session stand-in for fuzzing the SMTP core, and the checks every run must pass.

It answers like the transcript driver, but also walks into an AUTH exchange (``334`` to
``AUTH PLAIN`` without an initial response, then ``535``), so the SASL line reader is fuzzed
too. Every answer is a function of the event alone, so two runs over the same bytes must give
the same events and the same wire output however the bytes were split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgeward.smtp import (
    Auth,
    BdatChunk,
    ConnectionClosed,
    Data,
    Event,
    Extensions,
    Helo,
    MailFrom,
    MessageData,
    NeedData,
    ProtocolLimits,
    ProtocolViolation,
    RcptTo,
    Rset,
    ServerConnection,
    StartTls,
)
from edgeward.smtp.events import AuthResponse
from edgeward.types import Reply
from tests.smtp.smtp_transcript import answer

_LINE = re.compile(rb"^([2-5]\d\d)([ -])([^\r\n]*)$")
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
GREETING = Reply(220, None, "mx.example.net ESMTP")


def fuzz_answer(event: Event) -> Reply:
    if isinstance(event, Auth):
        if event.mechanism == "PLAIN" and event.initial is None:
            return Reply(334, None, "")
        return Reply(535, "5.7.8", "Authentication credentials invalid")
    if isinstance(event, AuthResponse):
        return Reply(535, "5.7.8", "Authentication credentials invalid")
    return answer(event)


@dataclass
class Run:
    """What one run of the core produced: events, and each write of the server."""

    events: list[Event] = field(default_factory=list)
    writes: list[bytes] = field(default_factory=list)
    closed: bool = False


def _pump(conn: ServerConnection, run: Run) -> None:
    while not conn.closed:
        event = conn.next_event()
        if isinstance(event, NeedData):
            return
        run.events.append(event)
        if isinstance(event, ConnectionClosed):
            return
        run.writes.append(conn.send(fuzz_answer(event)))


def run_core(
    stream: bytes, cuts: list[int], limits: ProtocolLimits, extensions: Extensions, *, eof: bool = True
) -> Run:
    """Feed ``stream`` split at ``cuts`` (sorted), answering every event; then EOF if asked."""
    conn = ServerConnection(limits, extensions)
    run = Run()
    run.writes.append(conn.greeting(GREETING))
    last = 0
    for cut in [*cuts, len(stream)]:
        if cut > last:
            conn.receive_data(stream[last:cut])
            last = cut
        _pump(conn, run)
    if eof:
        conn.receive_data(b"")
        _pump(conn, run)
    run.closed = conn.closed
    if eof:
        # However it ended (QUIT, a fatal refusal, EOF), a closed core only says so again.
        assert isinstance(conn.next_event(), ConnectionClosed)
    return run


def check_wire_reply(wire: bytes) -> None:
    """``wire`` is exactly one reply: CRLF-terminated lines, one code, ``-`` until the last."""
    assert wire.endswith(b"\r\n"), wire
    lines = wire[:-2].split(b"\r\n")
    codes = set()
    for i, line in enumerate(lines):
        m = _LINE.match(line)
        assert m is not None, (line, wire)
        codes.add(m.group(1))
        assert m.group(2) == (b" " if i == len(lines) - 1 else b"-"), wire
    assert len(codes) == 1, wire


def check_violation(event: ProtocolViolation) -> None:
    """A refusal by the core is a 4xx/5xx with an enhanced code of the same class."""
    reply = event.reply
    assert 400 <= reply.code <= 599, reply
    assert reply.enhanced is not None and _ENHANCED.match(reply.enhanced), reply
    assert reply.enhanced[0] == str(reply.code)[0], reply
    if event.fatal:
        assert reply.code == 421 or reply.code >= 500, reply


def check_envelope_order(events: list[Event]) -> None:
    """The state machine's promise: no recipient without a sender, no message without both.

    The stand-in session accepts every command, so each accepted event moves the transaction.
    The core may also end a transaction itself (a refused chunk); that only makes this check
    more lenient, never wrong.
    """
    mail = rcpt = False
    for event in events:
        if isinstance(event, Helo | Rset | StartTls):
            mail = rcpt = False
        elif isinstance(event, MailFrom):
            mail, rcpt = True, False
        elif isinstance(event, RcptTo):
            assert mail, events
            rcpt = True
        elif isinstance(event, Data | BdatChunk | MessageData):
            assert mail and rcpt, events
            if isinstance(event, MessageData):
                mail = rcpt = False


def check_run(run: Run, limits: ProtocolLimits) -> None:
    for wire in run.writes:
        check_wire_reply(wire)
    check_envelope_order(run.events)
    for i, event in enumerate(run.events):
        assert not isinstance(event, NeedData)
        if isinstance(event, ConnectionClosed):
            assert i == len(run.events) - 1, run.events
        if isinstance(event, ProtocolViolation):
            check_violation(event)
        if isinstance(event, MessageData):
            if event.violation is not None:
                assert event.data == b""
                assert event.violation.code >= 500 or event.violation.code == 452
            else:
                # Bare-LF normalisation may at most double the octets that were counted.
                assert len(event.data) <= 2 * limits.max_message_size
