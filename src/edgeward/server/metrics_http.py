"""The receiving process's own ``/metrics`` listener (``[metrics] listen``): plain HTTP for Prometheus.

Deliberately small, as exporters' listeners are: one request per connection (answered with
``Connection: close``), ``GET`` or ``HEAD`` of ``/metrics`` only (404 for other paths, 405 for
other methods, 400 for what is not HTTP). It serves metrics only, so it needs no framework.

Security: a client outside ``[web] metrics_allow`` gets 403 and nothing else; the request head
is capped (8 KiB, 10 s) so a slow or endless client holds a connection briefly at most, and at
most ``MAX_CLIENTS`` are served at once (the rest are closed unanswered).
Scrape-time work (merging the processes' files, counting the spool, reading the certificate
store) runs in a worker thread, so sessions never wait on a scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from edgeward.config.web import split_listen

log = logging.getLogger("edgeward.metrics")

HEAD_LIMIT = 8192
HEAD_TIMEOUT = 10.0
MAX_CLIENTS = 16


def allowed(host: str, networks: Sequence[str]) -> bool:
    """Whether ``host`` (as the socket reports it) is in one of ``networks``."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\r\n"
    )
    return head.encode("ascii") + body


class MetricsListener:
    """Serves ``registry`` at ``/metrics`` on ``listen`` to the networks ``allow()`` names."""

    def __init__(self, listen: str, registry: CollectorRegistry, allow: Callable[[], Sequence[str]]) -> None:
        self.host, self.port = split_listen(listen)
        self.registry = registry
        self._allow = allow  # asked per connection, so a reload of [web] metrics_allow applies
        self._clients = 0

    async def serve(self) -> None:
        """Listen until cancelled (a failure to bind raises, for the task supervisor to retry)."""
        server = await asyncio.start_server(self._client, self.host, self.port, limit=HEAD_LIMIT)
        log.info("metrics on http://%s/metrics", f"[{self.host}]:{self.port}" if ":" in self.host
                 else f"{self.host}:{self.port}")  # fmt: skip
        async with server:
            await server.serve_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= MAX_CLIENTS:
            writer.transport.abort()
            return
        self._clients += 1
        try:
            writer.write(await self._answer(reader, writer))
            await writer.drain()
            # What the client sent beyond the head is read and dropped before closing: closing
            # with unread input would reset the connection and the client might lose the answer.
            writer.write_eof()
            async with asyncio.timeout(1.0):
                while await reader.read(65536):
                    pass
        except (ConnectionError, OSError, TimeoutError, asyncio.LimitOverrunError):
            pass
        finally:
            self._clients -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return _response("400 Bad Request", b"bad request\n")
        peer = writer.get_extra_info("peername") or ("", 0)
        if not allowed(str(peer[0]), self._allow()):
            return _response("403 Forbidden", b"metrics are not served to this address\n")
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _response("400 Bad Request", b"bad request\n")
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target != b"/metrics":
            return _response("404 Not Found", b"only /metrics is served here\n")
        if method not in (b"GET", b"HEAD"):
            return _response("405 Method Not Allowed", b"GET /metrics\n")
        try:
            body = await asyncio.to_thread(generate_latest, self.registry)
        except Exception:
            log.exception("metrics: the scrape failed")
            return _response("500 Internal Server Error", b"the scrape failed; see the service log\n")
        answer = _response("200 OK", body, CONTENT_TYPE_LATEST)
        return answer[: answer.index(b"\r\n\r\n") + 4] if method == b"HEAD" else answer
