"""Reading a message body: DATA (dot-stuffed, ended by CRLF.CRLF) and BDAT (length-delimited).

``MessageBuffer`` keeps the bytes of one message while counting them against the size and
header limits as they arrive; once a limit is passed it stops storing (memory stays bounded)
but keeps counting. ``DataReader`` finds the end of a DATA body; BDAT chunks are counted by the
connection and appended to a ``MessageBuffer`` directly. ``finish_data``/``finish_bdat`` turn
the stored bytes into the ``MessageData`` event.

Security (SMTP smuggling, CVE-2023-51764/51765/51766):

* Only ``CRLF . CRLF`` ends DATA (RFC 5321 §4.1.1.4). The search runs on the raw bytes, with the
  last four bytes of each read kept back so a terminator split at any byte between reads is
  found, and nothing else (``LF.LF``, ``CR.CR``, ``LF.CRLF``, ``CRLF NUL . CRLF``...) can end the
  body or split it in two.
* Bare LF and bare CR are checked after the terminator is found. Under policy ``reject`` the
  message is refused (``550 5.6.0``); under ``normalize`` they become CRLF only then, so
  normalising can never create a terminator. NUL is refused in DATA under either policy
  (RFC 5321 §4.5.2 and RFC 6152 allow no NUL outside BINARYMIME): a next hop that drops NULs
  would otherwise see ``CRLF . CRLF`` in ``CRLF NUL . CRLF``.
* Dot-unstuffing (RFC 5321 §4.5.2) applies to CRLF-delimited lines only and runs before any
  normalisation, so it follows exactly the line structure that was on the wire.
* The header block is the bytes up to the first empty line (``LF CRLF`` or ``LF LF``); it is
  measured while it arrives so a client cannot make us buffer an endless header.

Large messages (``SPILL_ABOVE``): once a message outgrows the inline budget and its header
block is complete, the buffer stops keeping it and hands it, piece by piece, to a ``BodySink``
(a file in the spool's ``tmp/``, written by the session): ``_Spill`` unstuffs, checks and
normalises each piece exactly as ``finish_data``/``finish_bdat`` do the whole, keeping back the
last one or two bytes of a piece (a ``CR``, or a ``CRLF`` that a ``.`` may follow) so that no
``CRLF``, ``CRLF .`` or bare-ending test ever straddles two pieces. The result is the same bytes
the in-memory path gives, which the tests check on random splits; only the header block stays
in memory, for the header checks. A refused message's file is removed at once (``abort``).

Performance: every step is a C-level ``bytes`` operation (``find``, ``count``, ``replace``);
each byte is copied a bounded number of times and no Python loop runs per byte.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Literal, Protocol

from edgeward.message_file import MessageFile
from edgeward.smtp import replies as r
from edgeward.smtp.events import MessageData
from edgeward.types import Reply

__all__ = [
    "SPILL_ABOVE",
    "TERMINATOR",
    "BodySink",
    "DataReader",
    "MessageBuffer",
    "finish_bdat",
    "finish_data",
    "has_bare_line_endings",
    "to_crlf",
]

TERMINATOR = b"\r\n.\r\n"
_PREFIX = b"\r\n"  # the CRLF that ended the DATA command line: the body starts at a line start
#: A message past this many bytes is written to a file as it arrives instead of kept in memory.
#: Below it the whole-buffer path is faster (no file until the commit); above it memory per
#: session stays at this bound however large the message (the memory goals: a 10 MB message
#: raises the receiving process by less than 2 MB).
SPILL_ABOVE = 512 * 1024

log = logging.getLogger("edgeward.smtp")

# The disk under the spool is full or read-only: the client should try again later (RFC 3463).
_STORAGE_FULL = Reply(452, "4.3.1", "Insufficient system storage, try again later")
_STORAGE_ERROR = Reply(451, "4.3.0", "Local error in processing, message not accepted")
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
_PIECE = 64 * 1024


class BodySink(Protocol):
    """Where a large message's processed bytes go (the session's file in the spool)."""

    def write(self, data: bytes) -> None: ...

    def finish(self, header: bytes) -> MessageFile:
        """The bytes are all written: the message as a file, ``header`` its header block."""
        ...

    def abort(self) -> None:
        """The message is refused or abandoned: remove what was written."""
        ...


class _Spill:
    """Unstuffs, checks and normalises a message piece by piece on its way to a ``BodySink``.

    ``unstuff``: DATA's dot-unstuffing. ``check``: NUL refused and bare CR/LF found (all but
    BODY=BINARYMIME). ``normalize``: bare CR/LF become CRLF (DATA under ``normalize``, BDAT
    always); otherwise finding one refuses the message at the end.
    """

    __slots__ = (
        "_carry", "_check", "_header_done", "_normalize", "_skip", "_unstuff",
        "bare", "header", "nul", "sink",
    )  # fmt: skip

    def __init__(self, sink: BodySink, *, unstuff: bool, check: bool, normalize: bool) -> None:
        self.sink = sink
        self._unstuff, self._check, self._normalize = unstuff, check, normalize
        self._carry = b""
        self._skip = len(_PREFIX)  # output bytes that are the virtual CRLF, not the message
        self.bare = False
        self.nul = False
        self.header = b""  # the header block of the output, for the header checks at EOD
        self._header_done = False

    @property
    def refuses_bare(self) -> bool:
        return self.bare and not self._normalize

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        buf = self._carry + data
        # Hold back what a later byte could complete: "CRLF" (before a stuffed dot) or "CR".
        keep = 2 if buf.endswith(b"\r\n") else 1 if buf.endswith(b"\r") else 0
        cut = len(buf) - keep
        self._carry = bytes(buf[cut:])
        self._emit(buf[:cut] if keep else buf)

    def finish(self) -> None:
        self._emit(self._carry)
        self._carry = b""

    def _emit(self, region: bytes | bytearray) -> None:
        if not region:
            return
        if self._check:
            if b"\x00" in region:
                self.nul = True
            crlf = region.count(b"\r\n")
            bare = region.count(b"\n") != crlf or region.count(b"\r") != crlf
        else:
            bare = False
        if self._unstuff and b"\r\n." in region:
            region = region.replace(b"\r\n.", b"\r\n")
        if bare:
            self.bare = True
            if self._normalize:
                region = to_crlf(bytes(region))
        if self._skip:
            taken = min(self._skip, len(region))
            region = region[taken:]
            self._skip -= taken
        # Once the message is certain to be refused nothing more is written: the file goes.
        if region and not self.nul and not self.refuses_bare:
            if not self._header_done:
                self.header, self._header_done = _header_part(self.header, region)
            self.sink.write(bytes(region))


def _header_part(header: bytes, region: bytes | bytearray) -> tuple[bytes, bool]:
    """``header`` grown by the start of ``region`` up to the end of the header block, and
    whether the block is complete. The buffer spills only once the block is complete, so this
    is normally settled by the first region; the bound keeps a mistake from growing it."""
    joined = header + region[:SPILL_ABOVE]
    if joined.startswith((b"\r\n", b"\n")):  # no header fields: the empty line alone
        return (b"\r\n" if joined.startswith(b"\r\n") else b"\n"), True
    ends = [i for i in (joined.find(b"\n\r\n"), joined.find(b"\n\n")) if i >= 0]
    if not ends:
        return bytes(joined), len(joined) >= SPILL_ABOVE
    end = min(ends)
    return bytes(joined[: end + (3 if joined.startswith(b"\n\r\n", end) else 2)]), True


class MessageBuffer:
    """The bytes of one message, stored while within the limits.

    The buffer starts with a virtual CRLF so that the first line is a line like any other
    (an empty header block, a leading dot).
    """

    __slots__ = (
        "_buf", "_header_done", "_max_header", "_max_size", "_mode", "_scan", "_sink", "_spill_above",
        "size", "spill", "violation",
    )  # fmt: skip

    def __init__(
        self,
        max_size: int,
        max_header: int,
        spill_to: Callable[[], BodySink] | None = None,
        *,
        spill_above: int = SPILL_ABOVE,
        mode: tuple[bool, bool, bool] = (True, True, False),
    ) -> None:
        self._buf = bytearray(_PREFIX)
        self._max_size = max_size
        self._max_header = max_header
        self._header_done = False
        self._scan = 0
        self.size = 0
        self.violation: Reply | None = None
        # Where the message goes once it outgrows ``spill_above`` (None: always in memory), and
        # how its pieces are processed then: (unstuff, check, normalize), see ``_Spill``.
        self._sink = spill_to
        self._spill_above = spill_above
        self._mode = mode
        self.spill: _Spill | None = None

    def append(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        if self.violation is not None:
            return
        over = self.size > self._max_size
        if over:
            # Measure the header on the bytes up to the size limit first, so the limit the
            # stream passes first is the one reported, however the stream was split into reads.
            data = data[: len(data) - (self.size - self._max_size)]
        if self.spill is not None:
            self._to_sink(data)
        else:
            self._buf += data
            if not self._header_done:
                self._measure_header()
            if self._sink is not None and self._header_done and len(self._buf) > self._spill_above:
                self._start_spill()
        if over and self.violation is None:
            self._refuse(r.MESSAGE_TOO_BIG)

    def _start_spill(self) -> None:
        assert self._sink is not None
        unstuff, check, normalize = self._mode
        try:
            sink = self._sink()
        except OSError as exc:
            log.error("cannot create a file for a message in the spool: %s", exc)
            self._refuse(_STORAGE_FULL if exc.errno in _FULL else _STORAGE_ERROR)
            return
        self.spill = _Spill(sink, unstuff=unstuff, check=check, normalize=normalize)
        buf, self._buf = self._buf, bytearray()
        # In pieces, as later reads come: a whole-buffer pass would make two more copies of it.
        with memoryview(buf) as view:
            for start in range(0, len(buf), _PIECE):
                self._to_sink(view[start : start + _PIECE])
                if self.violation is not None:
                    break

    def _to_sink(self, data: bytes | bytearray | memoryview) -> None:
        assert self.spill is not None
        try:
            self.spill.feed(data)
        except OSError as exc:
            log.error("cannot write a message to the spool: %s", exc)
            self._refuse(_STORAGE_FULL if exc.errno in _FULL else _STORAGE_ERROR)

    def _measure_header(self) -> None:
        start = max(0, self._scan - 2)
        ends = [i for i in (self._buf.find(b"\n\r\n", start), self._buf.find(b"\n\n", start)) if i >= 0]
        if ends:
            self._header_done = True
            if min(ends) + 1 - len(_PREFIX) > self._max_header:
                self._refuse(r.HEADER_TOO_BIG)
            return
        self._scan = len(self._buf)
        # The empty line that would end a header of max_header octets may still be missing its
        # last two octets ("\r\n"), so only more than that is certainly too much.
        if self._scan - len(_PREFIX) > self._max_header + 2:
            self._refuse(r.HEADER_TOO_BIG)

    def _refuse(self, reply: Reply) -> None:
        self.violation = reply
        self._buf = bytearray()
        self.abort()

    def abort(self) -> None:
        """Give up a message written to the sink (refused, or its transaction abandoned)."""
        if self.spill is not None:
            self.spill.sink.abort()

    def finish_spill(self) -> MessageData:
        """The event for a message that went to the sink, its last byte read."""
        spill = self.spill
        assert spill is not None
        if self.violation is None:
            try:
                spill.finish()
            except OSError as exc:
                log.error("cannot write a message to the spool: %s", exc)
                self._refuse(_STORAGE_FULL if exc.errno in _FULL else _STORAGE_ERROR)
        if self.violation is None and spill.nul:
            self._refuse(r.NUL_IN_MESSAGE)
        elif self.violation is None and spill.refuses_bare:
            self._refuse(r.BARE_LINE_ENDING)
        if self.violation is not None:
            return MessageData(b"", self.violation)
        try:
            spooled = spill.sink.finish(spill.header)
        except OSError as exc:
            log.error("cannot write a message to the spool: %s", exc)
            self._refuse(_STORAGE_FULL if exc.errno in _FULL else _STORAGE_ERROR)
            return MessageData(b"", self.violation)
        self.spill = None  # the file is the session's now: abandoning the transaction keeps it
        return MessageData(b"", None, spooled)

    def content(self) -> bytes:
        """The stored message (without the virtual CRLF); empty once a limit was passed.

        The buffer is given up: the bytes object is the only copy left once this returns, so a
        message is held twice at most while it is handed on, never three times.
        """
        if self.violation is not None:
            return b""
        return _take(self._buf, len(_PREFIX))

    def with_prefix(self) -> bytearray:
        return self._buf


class DataReader:
    """Finds the end of one DATA body in the bytes fed to it."""

    __slots__ = ("_held", "_skip", "message")

    def __init__(
        self, max_size: int, max_header: int, spill_to: Callable[[], BodySink] | None = None, *,
        normalize: bool = False, spill_above: int = SPILL_ABOVE,
    ) -> None:  # fmt: skip
        self.message = MessageBuffer(
            max_size, max_header, spill_to, spill_above=spill_above, mode=(True, True, normalize)
        )
        # Bytes not yet known to be content: at most the first four of a terminator. They start
        # as the CRLF of the DATA line, so ".\r\n" at once is an empty message.
        self._held = _PREFIX
        self._skip = len(_PREFIX)  # leading held bytes that are the virtual CRLF, not content

    def feed(self, data: bytes | memoryview) -> int | None:
        """Take bytes; return how many were consumed if the terminator ended in them, else None.

        When ``None`` is returned every byte was consumed.
        """
        window = self._held + data
        end = window.find(TERMINATOR)
        if end < 0:
            stop = max(0, len(window) - (len(TERMINATOR) - 1))
            self._commit(window, stop)
            self._held = window[stop:]
            return None
        self._commit(window, end + len(_PREFIX))  # the CRLF before "." ends the last line
        self._held = b""
        return end + len(TERMINATOR) - len(window) + len(data)

    def _commit(self, window: bytes, stop: int) -> None:
        if stop > self._skip:
            with memoryview(window) as view:
                self.message.append(view[self._skip : stop])
        self._skip = max(0, self._skip - stop)


def has_bare_line_endings(data: bytes | bytearray) -> bool:
    crlf = data.count(b"\r\n")
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf


def to_crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def finish_data(message: MessageBuffer, bare_lf: Literal["reject", "normalize"]) -> MessageData:
    """The event for a DATA body whose terminator was found."""
    if message.spill is not None:
        return message.finish_spill()
    if message.violation is not None:
        return MessageData(b"", message.violation)
    raw = message.with_prefix()
    if b"\x00" in raw:
        return MessageData(b"", r.NUL_IN_MESSAGE)
    bare = has_bare_line_endings(raw)
    if bare and bare_lf == "reject":
        return MessageData(b"", r.BARE_LINE_ENDING)
    # Most messages have no line starting with a dot: then no unstuffed copy is made at all.
    if b"\r\n." in raw:
        unstuffed = raw.replace(b"\r\n.", b"\r\n")
        raw.clear()  # the received bytes are not needed once unstuffed: two copies at most
        raw = unstuffed
    data = _take(raw, len(_PREFIX))
    return MessageData(to_crlf(data) if bare else data)


def _take(buf: bytearray, start: int) -> bytes:
    """``bytes(buf[start:])`` in one copy, emptying ``buf`` so its memory goes at once."""
    with memoryview(buf) as view:
        data = bytes(view[start:])
    buf.clear()
    return data


def finish_bdat(message: MessageBuffer, binary: bool) -> MessageData:
    """The event for a BDAT transaction whose LAST chunk was read (RFC 3030: no unstuffing)."""
    if message.spill is not None:
        return message.finish_spill()
    if message.violation is not None:
        return MessageData(b"", message.violation)
    data = message.content()
    if binary:
        return MessageData(data)
    if b"\x00" in data:
        return MessageData(b"", r.NUL_IN_MESSAGE)
    return MessageData(to_crlf(data) if has_bare_line_endings(data) else data)
