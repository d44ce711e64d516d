"""The sans-IO SMTP server connection: bytes in, events out, replies back to bytes.

A session drives one ``ServerConnection`` per client::

    wire = conn.greeting(Reply(220, None, "mx.example ESMTP"))
    while not conn.closed:
        event = conn.next_event()
        if event is NeedData:            # or isinstance(event, NeedData)
            conn.receive_data(await read())  # b"" on EOF
            continue
        if isinstance(event, ConnectionClosed):
            break
        write(conn.send(decide(event)))

The connection does no I/O and keeps no clock; the order of states lives in ``state.py``, the
grammar in ``parse.py`` and body reading in ``data.py``.

Security:

* Bounded: a command line is at most ``max_line`` bytes (longer lines are skipped to their end
  and refused, never buffered whole); the body is bounded by ``MessageBuffer``; commands and
  errors per connection are counted and end the connection with ``421 4.7.0``.
* Strict lines: NUL and bare CR in a command line are always refused; a command line ended by a
  bare LF is refused under ``bare_lf="reject"`` (the default) and accepted under
  ``"normalize"``. A line that starts like an HTTP request closes the connection.
* STARTTLS (RFC 3207 §4.2, CVE-2011-0411): when the 220 is sent, every byte already received
  after the STARTTLS line is dropped, and so is anything fed before ``tls_started()``;
  ``tls_started()`` forgets the HELO and the transaction.
* BDAT: the chunk that follows a BDAT command is always consumed, even when the command is
  refused, so that message bytes are never read as commands. A chunk whose declared size is
  more than the message may still grow is refused with ``552 5.3.4`` as soon as the command
  line is read, and its bytes are then discarded unread into memory: RFC 3030 §2 has the
  client send the chunk right behind the command without waiting for a reply, so the bytes
  are on their way whatever we answer, and closing instead would break RFC 5321 §3.8 (close
  only after QUIT or 421). The early reply lets a pipelining client stop after this chunk
  (RFC 3030 §2: no further BDAT after a failed one); the minimum data rate and the DATA
  timeout bound how long discarding may take.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from edgeward.errors import ProtocolError
from edgeward.smtp import replies as r
from edgeward.smtp.commands import command_event, param_policy, render_helo
from edgeward.smtp.data import BodySink, DataReader, MessageBuffer, finish_bdat, finish_data
from edgeward.smtp.events import (
    NEED_DATA,
    Auth,
    AuthResponse,
    BdatChunk,
    ConnectionClosed,
    Data,
    Event,
    Helo,
    MailFrom,
    NeedData,
    ProtocolViolation,
    RcptTo,
    StartTls,
)
from edgeward.smtp.parse import (
    parse_bdat,
    split_command,
)
from edgeward.smtp.settings import (
    CROSS_PROTOCOL,
    NO_ARGUMENTS,
    UNIMPLEMENTED,
    VERBS,
    Extensions,
    ProtocolLimits,
    counts_as_error,
)
from edgeward.smtp.state import TABLE, Input, State, next_state, sequence_error
from edgeward.types import Reply

__all__ = ["Extensions", "ProtocolLimits", "ServerConnection", "SessionMisuse"]


class SessionMisuse(RuntimeError):
    """The session broke the calling contract (a bug in the caller, never client input)."""


class _Mode(enum.Enum):
    LINE = "line"  # reading command lines
    SKIP = "skip"  # skipping the rest of a line that was too long
    DATA = "data"  # reading a DATA body
    CHUNK = "chunk"  # reading the bytes of a BDAT chunk
    TLS = "tls"  # 220 to STARTTLS sent: nothing is read until tls_started()
    AUTH = "auth"  # 334 sent: the next line is a SASL response, not a command


# RFC 4954 §4: a client line in an AUTH exchange may be up to 12288 octets.
MAX_AUTH_LINE = 12288


class ServerConnection:
    """One SMTP server connection, driven by a session (see the module docstring)."""

    def __init__(self, limits: ProtocolLimits, extensions: Extensions) -> None:
        self.limits = limits
        self.extensions = extensions
        self._state = State.CONNECTED
        self._mode = _Mode.LINE
        self._buf = bytearray()
        self._pos = 0
        self._eof = False
        self._tls = False
        self._pending: tuple[Event, Input] | None = None
        self._commands = 0
        self._errors = 0
        self.discarded_after_starttls = 0  # bytes dropped by the STARTTLS rule, for the log
        self._reader: DataReader | None = None
        # Where a message past ``limits.spill_above`` goes as it arrives (the session's spool
        # file); None keeps every message in memory.
        self.spill_to: Callable[[], BodySink] | None = None
        self._chunk_left = 0
        self._chunk_size = 0
        self._chunk_last = False
        self._chunk_refusal: Reply | None = None
        self._chunk_discard = False  # refused early: the chunk's bytes are read and dropped
        self._mail: MailFrom | None = None
        self._recipients = 0
        self._bdat: MessageBuffer | None = None
        self._authenticated = False
        self._skip_quietly = False  # the skipped line was already answered

    # --- public interface ----------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def tls_active(self) -> bool:
        return self._tls

    @property
    def authenticated(self) -> bool:
        """True once an AUTH exchange was answered with 235 (RFC 4954 §4)."""
        return self._authenticated

    @property
    def pending_chunk(self) -> tuple[int, bool] | None:
        """(size, last) of the BDAT chunk whose event awaits an answer, else None.

        The event for ``BDAT n LAST`` is the message itself; the protocol log needs ``n``.
        """
        if self._pending is not None and self._pending[1] in (Input.CHUNK, Input.LAST_CHUNK):
            return self._chunk_size, self._chunk_last
        return None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet read as a command: what a client sent without waiting."""
        return len(self._buf) - self._pos

    @property
    def closed(self) -> bool:
        """True once QUIT or a 421 was answered, a fatal violation was answered, or the peer
        closed (``ConnectionClosed``): the session should close the socket."""
        return self._state is State.CLOSED

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` means the peer closed its side."""
        if not data:
            self._eof = True
            return
        if self._state is State.CLOSED:
            return
        if self._mode is _Mode.TLS:
            self.discarded_after_starttls += len(data)
            return
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_event(self) -> Event | NeedData:
        """The next event, or ``NeedData``. Never raises on client input."""
        if self._pending is not None:
            raise SessionMisuse("answer the last event with send() before reading the next")
        if self._state is State.CLOSED:
            return ConnectionClosed()
        if self._mode is _Mode.DATA:
            event = self._read_data()
        elif self._mode is _Mode.CHUNK:
            event = self._read_chunk()
        elif self._mode is _Mode.TLS:
            event = NEED_DATA
        elif self._mode is _Mode.AUTH:
            event = self._read_auth_line()
        else:
            event = self._read_line()
        if event is NEED_DATA and self._eof:
            self._state = State.CLOSED
            return ConnectionClosed()
        return event

    def greeting(self, reply: Reply) -> bytes:
        """The banner: 220, or 554 (then only QUIT is accepted, RFC 5321 §3.1), or 421."""
        if reply.code == 554:
            self._state = State.REFUSED
        elif reply.code == 421:
            self._state = State.CLOSED
        return reply.to_bytes()

    def send(self, reply: Reply) -> bytes:
        """The wire bytes answering the last event; also moves the state machine.

        Without a pending event (a time-out, a shutdown) the reply is only rendered; a 421
        still closes.
        """
        if self._pending is None:
            if reply.code == 421:
                self._state = State.CLOSED
            return reply.to_bytes()
        event, kind = self._pending
        self._pending = None
        wire = self._render(event, reply)
        self._state = next_state(self._state, kind, reply.code < 400)
        if reply.code < 400:
            self._accepted(event)
        if isinstance(event, Auth | AuthResponse):
            # 334 continues the exchange; any other reply ends it (RFC 4954 §4).
            self._mode = _Mode.AUTH if reply.code == 334 else _Mode.LINE
            self._authenticated = self._authenticated or reply.code == 235
        if reply.code == 421 or (isinstance(event, ProtocolViolation) and event.fatal):
            self._state = State.CLOSED
        if self._state in (State.CONNECTED, State.GREETED):
            self._reset_transaction()
        return wire

    def tls_started(self) -> None:
        """The TLS handshake succeeded: start over as a new, unauthenticated, un-greeted session."""
        self._tls = True
        self._authenticated = False
        self._state = State.CONNECTED
        self._mode = _Mode.LINE
        self._pending = None
        self._buf.clear()
        self._pos = 0
        self._reset_transaction()

    # --- replies and transitions ---------------------------------------------------------------

    def _accepted(self, event: Event) -> None:
        if isinstance(event, MailFrom):
            self._mail = event
        elif isinstance(event, RcptTo):
            self._recipients += 1
        elif isinstance(event, Data):
            self._mode = _Mode.DATA
            self._reader = DataReader(
                self.limits.max_message_size, self.limits.max_header_size, self.spill_to,
                normalize=self.limits.bare_lf == "normalize", spill_above=self.limits.spill_above,
            )  # fmt: skip
        elif isinstance(event, StartTls):
            self._mode = _Mode.TLS
            self.discarded_after_starttls += len(self._buf) - self._pos
            self._buf.clear()
            self._pos = 0

    def _render(self, event: Event, reply: Reply) -> bytes:
        if isinstance(event, Helo) and 200 <= reply.code < 300:
            return render_helo(event, reply, self.extensions, tls=self._tls)
        return reply.to_bytes()

    def _reset_transaction(self) -> None:
        self._mail = None
        self._recipients = 0
        if self._bdat is not None:
            self._bdat.abort()  # a BDAT transaction given up between chunks (RSET, STARTTLS)
        self._bdat = None

    def abandon(self) -> None:
        """The client is gone: remove the file of a large message that was arriving, if any."""
        if self._reader is not None:
            self._reader.message.abort()
            self._reader = None
        if self._bdat is not None:
            self._bdat.abort()
            self._bdat = None

    def _emit(self, event: Event, kind: Input) -> Event:
        self._pending = (event, kind)
        return event

    def _refuse(self, reply: Reply, kind: Input = Input.REFUSED_INPUT, *, command: str = "") -> Event:
        if counts_as_error(reply):
            self._errors += 1
            if self._errors > self.limits.max_protocol_errors:
                return self._emit(ProtocolViolation(r.TOO_MANY_ERRORS, fatal=True), kind)
        return self._emit(ProtocolViolation(reply, fatal=reply.code == 421, command=command), kind)

    # --- command lines -------------------------------------------------------------------------

    def _read_line(self) -> Event | NeedData:
        if self._mode is _Mode.SKIP:
            nl = self._buf.find(b"\n", self._pos)
            if nl < 0:
                self._pos = len(self._buf)
                return NEED_DATA
            self._pos = nl + 1
            self._mode = _Mode.LINE
            if self._skip_quietly:
                self._skip_quietly = False
                return self._read_line()
            return self._command(None)
        nl = self._buf.find(b"\n", self._pos, self._pos + self.limits.max_line)
        if nl < 0:
            if len(self._buf) - self._pos >= self.limits.max_line:
                self._mode = _Mode.SKIP
                return self._read_line()
            return NEED_DATA
        line = bytes(self._buf[self._pos : nl])
        self._pos = nl + 1
        return self._command(line)

    def _command(self, line: bytes | None) -> Event | NeedData:
        self._commands += 1
        if self._commands > self.limits.max_commands:
            return self._refuse(r.TOO_MANY_COMMANDS)
        if line is None:
            return self._refuse(r.LINE_TOO_LONG)
        if line.endswith(b"\r"):
            line = line[:-1]
        elif self.limits.bare_lf == "reject":
            return self._refuse(r.BARE_LF_IN_COMMAND)
        if b"\r" in line or b"\x00" in line:
            return self._refuse(r.BAD_CHARACTER_IN_COMMAND)
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return self._refuse(r.INVALID_UTF8)
        verb, arg = split_command(text)
        kind = VERBS.get(verb)
        if kind is None:
            if verb in CROSS_PROTOCOL:
                return self._refuse(r.CROSS_PROTOCOL)
            return self._refuse(r.NOT_IMPLEMENTED if verb in UNIMPLEMENTED else r.COMMAND_UNRECOGNIZED)
        try:
            if kind is Input.CHUNK:
                return self._start_chunk(arg)
            if kind is Input.STARTTLS:
                if self._tls:
                    return self._refuse(r.TLS_ALREADY_ACTIVE)
                if not self.extensions.starttls:
                    return self._refuse(r.NOT_IMPLEMENTED)
            if (self._state, kind) not in TABLE:
                return self._refuse(sequence_error(self._state, kind))
            if kind in NO_ARGUMENTS and arg:
                return self._refuse(r.NO_ARGUMENTS)
            return self._emit(self._parse(kind, arg), kind)
        except ProtocolError as exc:
            return self._refuse(exc.reply, command=kind.value)

    def _parse(self, kind: Input, arg: str) -> Event:
        return command_event(
            kind,
            arg,
            policy=param_policy(self.extensions, self.limits, tls=self._tls),
            mail=self._mail,
            recipients=self._recipients,
            max_recipients=self.limits.max_recipients,
            authenticated=self._authenticated,
        )

    def _read_auth_line(self) -> Event | NeedData:
        nl = self._buf.find(b"\n", self._pos, self._pos + MAX_AUTH_LINE + 2)
        if nl < 0:
            if len(self._buf) - self._pos > MAX_AUTH_LINE + 1:
                # Too long to be a response: end the exchange and skip the rest as a bad line.
                self._mode = _Mode.SKIP
                self._skip_quietly = True
                return self._emit(ProtocolViolation(r.AUTH_LINE_TOO_LONG), Input.AUTH_RESPONSE)
            return NEED_DATA
        line = bytes(self._buf[self._pos : nl])
        self._pos = nl + 1
        self._mode = _Mode.LINE
        if not line.endswith(b"\r") or b"\r" in line[:-1] or b"\x00" in line:
            return self._emit(ProtocolViolation(r.AUTH_BAD_LINE), Input.AUTH_RESPONSE)
        try:
            text = line[:-1].decode("ascii")
        except UnicodeDecodeError:
            return self._emit(ProtocolViolation(r.AUTH_BAD_LINE), Input.AUTH_RESPONSE)
        return self._emit(AuthResponse(text), Input.AUTH_RESPONSE)

    # --- bodies --------------------------------------------------------------------------------

    def _read_data(self) -> Event | NeedData:
        assert self._reader is not None
        with memoryview(self._buf) as whole, whole[self._pos :] as view:
            consumed = self._reader.feed(view)
        if consumed is None:
            self._pos = len(self._buf)
            return NEED_DATA
        self._pos += consumed
        self._mode = _Mode.LINE
        event = finish_data(self._reader.message, self.limits.bare_lf)
        self._reader = None
        return self._emit(event, Input.MESSAGE)

    def _start_chunk(self, arg: str) -> Event | NeedData:
        size, last = parse_bdat(arg)  # a size we cannot read leaves nothing to consume: plain 501
        kind = Input.LAST_CHUNK if last else Input.CHUNK
        refusal = None
        if not self.extensions.chunking:
            refusal = r.NOT_IMPLEMENTED
        elif (self._state, kind) not in TABLE:
            refusal = sequence_error(self._state, kind)
        elif self._bdat is None:
            binary = self._mail is not None and self._mail.body == "BINARYMIME"
            self._bdat = MessageBuffer(
                self.limits.max_message_size, self.limits.max_header_size, self.spill_to,
                spill_above=self.limits.spill_above, mode=(False, not binary, True),
            )  # fmt: skip
        self._mode = _Mode.CHUNK
        self._chunk_left = self._chunk_size = size
        self._chunk_last = last
        self._chunk_refusal = refusal
        self._chunk_discard = False
        bdat = self._bdat
        if refusal is None and bdat is not None and bdat.size + size > self.limits.max_message_size:
            # The size is known from the command: answer now, then drop the bytes as they come.
            self._chunk_discard = True
            return self._emit(ProtocolViolation(r.MESSAGE_TOO_BIG), kind)
        return self._read_chunk()

    def _read_chunk(self) -> Event | NeedData:
        take = min(self._chunk_left, len(self._buf) - self._pos)
        if take and self._chunk_refusal is None and self._bdat is not None and not self._chunk_discard:
            with memoryview(self._buf) as whole, whole[self._pos : self._pos + take] as view:
                self._bdat.append(view)
        self._pos += take
        self._chunk_left -= take
        if self._chunk_left:
            return NEED_DATA
        self._mode = _Mode.LINE
        if self._chunk_discard:  # already answered when the command was read
            self._chunk_discard = False
            return self._read_line()
        if self._chunk_refusal is not None or self._bdat is None:
            return self._refuse(self._chunk_refusal or r.BAD_SEQUENCE)
        if self._chunk_last:
            binary = self._mail is not None and self._mail.body == "BINARYMIME"
            return self._emit(finish_bdat(self._bdat, binary), Input.LAST_CHUNK)
        if self._bdat.violation is not None:
            return self._emit(ProtocolViolation(self._bdat.violation), Input.CHUNK)
        return self._emit(BdatChunk(self._chunk_size, last=False), Input.CHUNK)
