"""A large message on its way to a file: what the SMTP core hands its pieces to (``smtp.data``).

``Spill`` unstuffs, checks and normalises each piece exactly as ``smtp.data.finish_data`` and
``finish_bdat`` do a whole message, holding back a trailing ``CR`` or ``CRLF`` so no rule
straddles two pieces, and passes the result to a ``BodySink`` (the session's file in the
spool's ``tmp/``, ``queue.spill``); the sink is a port, so the core still does no I/O itself.
"""

from __future__ import annotations

from typing import Protocol

from edgeward.message_file import MessageFile
from edgeward.smtp.lineends import to_crlf

__all__ = ["PREFIX", "SPILL_ABOVE", "BodySink", "Spill", "header_part"]

#: A message past this many bytes is written to a file as it arrives instead of kept in memory.
#: Below it the whole-buffer path is faster (no file until the commit); above it memory per
#: session stays at this bound however large the message (the memory goals: a 10 MB message
#: raises the receiving process by less than 2 MB).
SPILL_ABOVE = 512 * 1024
PREFIX = b"\r\n"  # the CRLF that ended the DATA command line: the body starts at a line start


class BodySink(Protocol):
    """Where a large message's processed bytes go (the session's file in the spool)."""

    def write(self, data: bytes) -> None: ...

    def finish(self, header: bytes) -> MessageFile:
        """The bytes are all written: the message as a file, ``header`` its header block."""
        ...

    def abort(self) -> None:
        """The message is refused or abandoned: remove what was written."""
        ...


class Spill:
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
        self._skip = len(PREFIX)  # output bytes that are the virtual CRLF, not the message
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
                self.header, self._header_done = header_part(self.header, region)
            self.sink.write(bytes(region))


def header_part(header: bytes, region: bytes | bytearray) -> tuple[bytes, bool]:
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
