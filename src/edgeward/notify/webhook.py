"""The webhook channel: each notice POSTed as JSON, signed with HMAC-SHA256, retried with backoff.

The request carries ``X-Edgeward-Timestamp: <unix seconds>`` and
``X-Edgeward-Signature: sha256=<hex>``, the HMAC-SHA256 under the key of ``key_file`` over
``<timestamp>.<body>`` (the scheme of Stripe's and GitHub's webhooks). A receiver recomputes it
over the raw body, compares in constant time, and refuses a timestamp older than a few minutes,
so a captured request cannot be replayed later (:func:`verify`). The body also holds a random
``id`` for receivers that remember what they have seen.

``send`` only queues: notices wait in a bounded queue (``queue_size``; when full the oldest is
dropped and counted), and one task (:meth:`WebhookChannel.run`) posts them in order, pausing
``backoff`` seconds after a failure, doubling up to ``max_backoff``, for ``retries`` attempts.
A server that is down or slow therefore never delays mail or the other channels. Failures are
logged at ERROR at most once a minute, with the number left out.

The HTTP/1.1 client is a few lines over asyncio streams (the project has no HTTP library to
spare): one request per connection, ``Connection: close``, any 2xx is success; the response
is read only as far as its status line.

Security: the key never reaches a log; an https URL is verified against the system's CA
certificates (or ``ca_file``) and the URL's host name.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import logging
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edgeward.config.notify import WebhookConfig
from edgeward.errors import ConfigError
from edgeward.notify.limiter import Batch
from edgeward.ports import Clock, SystemClock

__all__ = ["WebhookChannel", "WebhookError", "payload", "read_key", "sign", "verify"]

log = logging.getLogger("edgeward.notify.webhook")

LOUD_INTERVAL = 60.0
MAX_STATUS_LINE = 1024
TOLERANCE = 300.0


class WebhookError(OSError):
    """The POST did not get a 2xx answer."""


def read_key(path: Path) -> bytes:
    """The HMAC key: the file's bytes, surrounding whitespace removed (a trailing newline)."""
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"notify.webhook.key_file: cannot read {path}: {exc.strerror}") from None
    if len(key) < 16:
        raise ConfigError(f"notify.webhook.key_file: {path} holds fewer than 16 bytes of key")
    return key


def sign(key: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Edgeward-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    key: bytes, timestamp: str, body: bytes, signature: str, *, now: float | None = None,
    tolerance: float = TOLERANCE,
) -> bool:  # fmt: skip
    """What a receiver checks: the signature matches and the timestamp is recent."""
    if not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(key, int(timestamp), body), signature)


def payload(batch: Batch, hostname: str) -> bytes:
    """The JSON body for one notice."""
    first = batch.first
    doc = {
        "id": secrets.token_hex(12),
        "host": hostname,
        "kind": first.kind,
        "severity": first.severity,
        "summary": first.summary,
        "at": first.at,
        "count": batch.count,
        "fields": dict(first.fields),
        "events": [
            {"summary": e.summary, "at": e.at, "fields": dict(e.fields)} for e in batch.samples
        ],
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(slots=True)
class _Job:
    body: bytes
    attempts: int = 0


class WebhookChannel:
    """Queues notices and posts them in a task of its own; see the module docstring."""

    name = "webhook"

    def __init__(
        self, cfg: WebhookConfig, hostname: str, key: bytes, *, clock: Clock | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.cfg = cfg
        self.hostname = hostname
        self._key = key
        self._clock = clock if clock is not None else SystemClock()
        self._now = now
        self._queue: collections.deque[_Job] = collections.deque()
        self._wake = asyncio.Event()
        self.dropped = 0
        self.delivered = 0
        self._last_loud = -LOUD_INTERVAL
        self._quiet = 0
        parts = urlsplit(cfg.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._netloc = parts.netloc.rpartition("@")[2]
        self._ssl: ssl.SSLContext | None = None
        if self._https:
            self._ssl = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)

    async def send(self, batch: Batch) -> str:
        """Queue the notice; it is posted by :meth:`run`."""
        if len(self._queue) >= self.cfg.queue_size:
            self._queue.popleft()
            self.dropped += 1
            self._loud("webhook queue full (%d); the oldest notice was dropped", self.cfg.queue_size)
        self._queue.append(_Job(payload(batch, self.hostname)))
        self._wake.set()
        return f"queued for {self._netloc}"

    def pending(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        """Post queued notices until cancelled."""
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            job = self._queue[0]
            try:
                await self.post(job.body)
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                job.attempts += 1
                if job.attempts > self.cfg.retries:
                    if self._queue and self._queue[0] is job:
                        self._queue.popleft()
                    self.dropped += 1
                    self._loud("webhook %s failed %d times (%s); the notice is dropped",
                               self._netloc, job.attempts, exc or type(exc).__name__)  # fmt: skip
                    continue
                pause = min(self.cfg.backoff * 2 ** (job.attempts - 1), self.cfg.max_backoff)
                self._loud("webhook %s failed (%s); retrying in %gs",
                           self._netloc, exc or type(exc).__name__, pause)  # fmt: skip
                await asyncio.sleep(pause)
                continue
            if self._queue and self._queue[0] is job:
                self._queue.popleft()
            self.delivered += 1

    async def post(self, body: bytes) -> int:
        """One signed POST; the status code of a 2xx answer, ``WebhookError`` otherwise."""
        stamp = int(self._now())
        head = (
            f"POST {self._target} HTTP/1.1\r\n"
            f"Host: {self._netloc}\r\n"
            "User-Agent: Edgeward-Notify\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"X-Edgeward-Timestamp: {stamp}\r\n"
            f"X-Edgeward-Signature: {sign(self._key, stamp, body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        async with asyncio.timeout(self.cfg.timeout):
            reader, writer = await asyncio.open_connection(
                self._host, self._port, ssl=self._ssl, server_hostname=self._host if self._ssl else None,
                limit=MAX_STATUS_LINE,
            )  # fmt: skip
            try:
                writer.write(head.encode("ascii") + body)
                await writer.drain()
                try:
                    line = await reader.readuntil(b"\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    raise WebhookError("no HTTP status line in the answer") from None
            finally:
                writer.transport.abort()
        parts = line.decode("ascii", "replace").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise WebhookError(f"not an HTTP answer: {line[:60]!r}")
        code = int(parts[1])
        if not 200 <= code < 300:
            raise WebhookError(f"HTTP {code}")
        return code

    def _loud(self, message: str, *args: object) -> None:
        now = self._clock.monotonic()
        if now - self._last_loud < LOUD_INTERVAL:
            self._quiet += 1
            return
        if self._quiet:
            message += f" ({self._quiet} similar messages suppressed)"
        self._last_loud, self._quiet = now, 0
        log.error(message, *args)

    async def close(self) -> None:
        return None
