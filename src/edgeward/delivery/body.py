"""The DATA phase of a delivery, with the body written in bounded chunks.

aiosmtplib's ``SMTP.data`` makes four whole copies of a message before it writes a byte (line
endings normalised, leading dots doubled, the terminator appended, the write buffer): the
delivery process grew by 59 MB for one 10 MB message (``bench/memory_bench.py``). Here the body
goes out in chunks of about :data:`CHUNK` bytes, each cut at a line end and dot-stuffed on its
own (RFC 5321 §4.5.2), and the transport's flow control is awaited between chunks, so a message
costs its one copy read from the spool plus a chunk.

Line endings: the spool holds CRLF lines (the receiving side refuses or normalises bare CR and
LF, RFC 5321 §2.3.8); a message that still has a bare one (a generated notice, an operator's
import) is normalised whole first, as aiosmtplib would have done.

The reply to DATA and the final reply are read through aiosmtplib (``execute_command`` and the
protocol's ``read_response``); only the body bypasses ``SMTP.data``. A next hop that stops
reading is given ``timeout`` seconds per chunk, then the attempt fails as a time-out.
"""

from __future__ import annotations

import asyncio

import aiosmtplib

from edgeward.smtp.lineends import has_bare_line_endings, to_crlf

__all__ = ["CHUNK", "chunks", "send_data"]

CHUNK = 64 * 1024
_TERMINATOR = b".\r\n"


def chunks(data: bytes, size: int = CHUNK) -> list[tuple[int, int]]:
    """``(start, end)`` spans of ``data``, each ending at a line end where a line end is within
    ``size`` bytes (a longer line is cut, never between its CR and LF)."""
    spans: list[tuple[int, int]] = []
    start, n = 0, len(data)
    while start < n:
        end = min(start + size, n)
        if end < n:
            cut = data.rfind(b"\n", start, end)
            if cut >= start:
                end = cut + 1
            elif data[end - 1 : end] == b"\r" and end - 1 > start:
                end -= 1  # keep CR and LF together: "\r" | "\n." would hide a leading dot
        spans.append((start, end))
        start = end
    return spans


def stuffed(data: bytes, start: int, end: int) -> bytes:
    """``data[start:end]`` with every dot that starts a line doubled."""
    chunk = data[start:end]
    out = chunk.replace(b"\r\n.", b"\r\n..")
    if chunk[:1] == b"." and (start == 0 or data[start - 1 : start] == b"\n"):
        out = b"." + out
    return out


async def send_data(smtp: aiosmtplib.SMTP, data: bytes) -> aiosmtplib.SMTPResponse:
    """DATA, the body, the terminator; the final reply. Raises what ``SMTP.data`` raises."""
    if has_bare_line_endings(data):
        data = to_crlf(data)
    start = await smtp.execute_command(b"DATA")
    if start.code != 354:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol = smtp.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    timeout = smtp.timeout
    for begin, end in chunks(data):
        protocol.write(stuffed(data, begin, end))
        try:
            async with asyncio.timeout(timeout):
                await protocol._drain_helper()  # the transport's flow control, as streams use it
        except TimeoutError:
            smtp.close()
            raise aiosmtplib.SMTPTimeoutError("Timed out writing the message") from None
        except ConnectionError as exc:
            smtp.close()
            raise aiosmtplib.SMTPServerDisconnected(str(exc)) from None
    protocol.write(_TERMINATOR if data.endswith(b"\r\n") or not data else b"\r\n" + _TERMINATOR)
    try:
        response = await protocol.read_response(timeout=timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        smtp.close()
        raise
    if response.code != 250:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response
