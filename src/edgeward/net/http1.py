"""A minimal HTTP/1.1 response reader for fetching small text documents over a stream.

This module owns reading one response from an ``asyncio.StreamReader``: status line, headers,
and a body framed by Content-Length, chunked transfer coding, or the end of the stream. It
exists for the MTA-STS policy fetch (``edgeward.delivery.mta_sts``), which must connect to an
address the gateway's own resolver chose while verifying TLS for the policy host's name, which
HTTP libraries do not offer without replacing their resolver.

Security: the peer is untrusted. Only ``200`` with ``text/plain`` is accepted (no redirects);
lines, headers (:data:`MAX_HEADERS`) and the body (the caller's limit) are bounded; a response
with both Content-Length and Transfer-Encoding, conflicting lengths, a Content-Encoding or
folded headers is refused rather than interpreted, as those are how responses are smuggled.
"""

from __future__ import annotations

import asyncio
import contextlib

from edgeward.errors import EdgewardError

__all__ = ["MAX_HEADERS", "HttpError", "close", "read_text_response"]

MAX_HEADERS = 16 * 1024


class HttpError(EdgewardError):
    """The response is not one this reader accepts, or the connection failed mid-response."""


async def close(writer: asyncio.StreamWriter) -> None:
    # The response is complete or useless by now. A TLS goodbye would wait for the peer's
    # close_notify, which a stalled or hostile server never sends; so the connection is dropped.
    writer.transport.abort()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def read_text_response(reader: asyncio.StreamReader, max_body: int) -> str:
    """The body of a ``200`` ``text/plain`` response as text; raises HttpError otherwise."""
    status = await _read_line(reader)
    parts = status.split(" ", 2)
    if len(parts) < 2 or parts[0] not in ("HTTP/1.0", "HTTP/1.1") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP response: {status[:60]!r}")
    if parts[1] != "200":
        # Redirects are not followed (RFC 8461 §3.3 forbids them); any answer but 200 fails.
        raise HttpError(f"HTTP status {status[9:60]!r}")
    headers: dict[str, list[str]] = {}
    size = len(status)
    while line := await _read_line(reader):
        size += len(line)
        if size > MAX_HEADERS:
            raise HttpError("HTTP headers too large")
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or line[0] in " \t":
            raise HttpError(f"malformed HTTP header {line[:60]!r}")
        headers.setdefault(name.lower(), []).append(value.strip(" \t"))

    content_type = headers.get("content-type", [])
    if len(content_type) != 1 or content_type[0].split(";")[0].strip().lower() != "text/plain":
        raise HttpError(f"response served as {', '.join(content_type) or 'no Content-Type'}, not text/plain")
    if any(v.lower() != "identity" for v in headers.get("content-encoding", [])):
        raise HttpError("response served with a Content-Encoding")
    lengths = headers.get("content-length", [])
    codings = headers.get("transfer-encoding", [])
    if codings:
        # Both framings at once is how responses get smuggled; refuse rather than pick one.
        if lengths or ",".join(codings).replace(" ", "").lower() != "chunked":
            raise HttpError(f"unsupported framing: Transfer-Encoding {', '.join(codings)}")
        body = await _read_chunked(reader, max_body)
    elif lengths:
        if len(set(lengths)) != 1 or not lengths[0].isdigit() or len(lengths[0]) > 12:
            raise HttpError(f"invalid Content-Length {', '.join(lengths)[:40]}")
        length = int(lengths[0])
        if length > max_body:
            raise HttpError(f"response of {length} bytes is larger than {max_body}")
        body = await _read_exactly(reader, length)
    else:
        body = await reader.read(max_body + 1)
        while len(body) <= max_body and (more := await reader.read(max_body + 1 - len(body))):
            body += more
        if len(body) > max_body:
            raise HttpError(f"response larger than {max_body} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError("response is not UTF-8 text") from None


async def _read_line(reader: asyncio.StreamReader) -> str:
    """One line without its end; the stream's limit bounds it."""
    try:
        raw = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        raise HttpError("connection closed in the middle of the HTTP response") from None
    except asyncio.LimitOverrunError:
        raise HttpError("HTTP response line too long") from None
    try:
        return raw.rstrip(b"\r\n").decode("ascii")
    except UnicodeDecodeError:
        raise HttpError("HTTP response line is not ASCII") from None


async def _read_exactly(reader: asyncio.StreamReader, length: int) -> bytes:
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise HttpError("response body cut short") from None


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = b""
    while True:
        size_text = (await _read_line(reader)).split(";")[0].strip(" \t")
        if not size_text or len(size_text) > 8 or any(c not in "0123456789abcdefABCDEF" for c in size_text):
            raise HttpError(f"invalid chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(body) + size > max_body:
            raise HttpError(f"response larger than {max_body} bytes")
        body += await _read_exactly(reader, size)
        if await _read_line(reader):
            raise HttpError("chunk not followed by a line end")
    trailers = 0
    while line := await _read_line(reader):
        trailers += len(line)
        if trailers > MAX_HEADERS:
            raise HttpError("HTTP trailers too large")
    return body
