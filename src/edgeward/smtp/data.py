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
(a file in the spool's ``tmp/``, written by the session): ``smtp.spill.Spill`` unstuffs, checks and
normalises each piece exactly as ``finish_data``/``finish_bdat`` do the whole, keeping back the
last one or two bytes of a piece (a ``CR``, or a ``CRLF`` that a ``.`` may follow) so that no
``CRLF``, ``CRLF .`` or bare-ending test ever straddles two pieces. The result is the same bytes
the in-memory path gives, which the tests check on random splits; only the header block stays
in memory, for the header checks. A refused message's file is removed at once (``abort``).

Performance: every step is a C-level ``bytes`` operation (``find``, ``count``, ``replace``);
each byte is copied a bounded number of times and no Python loop runs per byte.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from edgeward.errors import storage_error
from edgeward.smtp import replies as r
from edgeward.smtp.events import MessageData
from edgeward.smtp.lineends import has_bare_line_endings, to_crlf
from edgeward.smtp.spill import PREFIX as _PREFIX
from edgeward.smtp.spill import SPILL_ABOVE, BodySink, Spill
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

log = logging.getLogger("edgeward.smtp")

_PIECE = 64 * 1024


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
        self.spill: Spill | None = None

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
            self._storage_failed("cannot create a file for a message in the spool", exc)
            return
        self.spill = Spill(sink, unstuff=unstuff, check=check, normalize=normalize)
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
            self._storage_failed("cannot write a message to the spool", exc)

    def _storage_failed(self, what: str, exc: OSError) -> None:
        error = storage_error(what, exc)  # a full disk is 452 4.3.1, as at the commit
        log.error("%s", error)
        self._refuse(error.reply)

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
                self._storage_failed("cannot write a message to the spool", exc)
        if self.violation is None and spill.nul:
            self._refuse(r.NUL_IN_MESSAGE)
        elif self.violation is None and spill.refuses_bare:
            self._refuse(r.BARE_LINE_ENDING)
        if self.violation is not None:
            return MessageData(b"", self.violation)
        try:
            spooled = spill.sink.finish(spill.header)
        except OSError as exc:
            self._storage_failed("cannot write a message to the spool", exc)
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
