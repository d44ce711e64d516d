"""The webhook channel against an HTTP(S) server the test starts, which checks every signature.

The server recomputes the HMAC itself (``hmac`` over ``timestamp.body``, not the channel's own
helper), so a signing mistake cannot be hidden by the same mistake on both sides.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

from edgeward.config.notify import WebhookConfig
from edgeward.config.schema import Config
from edgeward.notify.build import build_notifier
from edgeward.notify.events import Event
from edgeward.notify.limiter import Batch
from edgeward.notify.notifier import Notifier
from edgeward.notify.webhook import WebhookChannel, payload, read_key, sign, verify
from edgeward.queue.spool import Spool
from tests.ports import free_port

KEY = b"0123456789abcdef-webhook-test-key"


class Receiver:
    """An HTTP server answering each POST with the next scripted status (then 200)."""

    def __init__(self, statuses: list[int] | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stamp = self.headers["X-Edgeward-Timestamp"]
                mac = hmac.new(KEY, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
                receiver.attempts += 1
                ok = hmac.compare_digest(f"sha256={mac}", self.headers["X-Edgeward-Signature"])
                fresh = abs(time.time() - int(stamp)) < 300
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if not (ok and fresh):
                    receiver.bad_signatures += 1
                    status = 401
                elif status == 200:
                    receiver.received.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([500, 503])
    yield r
    r.stop()


def _batch(n: int = 1) -> Batch:
    event = Event.make("virus", "warning", "Eicar found", signature="Eicar-Test-Signature", sender="a@b.test")
    return Batch(event.key, [event] * min(n, 5), n)


def _channel(url: str, **cfg: Any) -> WebhookChannel:
    # The key is handed over directly; key_file is only what the configuration requires.
    settings: dict[str, Any] = {"url": url, "key_file": "k", "backoff": 0.01, "max_backoff": 0.05, **cfg}
    return WebhookChannel(WebhookConfig(**settings), "mx.example.test", KEY)


def test_signature_and_replay_window() -> None:
    body = b'{"kind":"virus"}'
    expected = "sha256=" + hmac.new(KEY, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(KEY, 1700000000, body) == expected
    assert verify(KEY, "1700000000", body, expected, now=1700000100)
    assert not verify(KEY, "1700000000", body, expected, now=1700000000 + 301)  # replayed later
    assert not verify(KEY, "1700000000", body + b" ", expected, now=1700000000)  # body changed
    assert not verify(KEY, "1700000001", body, expected, now=1700000000)  # timestamp changed
    assert not verify(KEY, "abc", body, expected, now=1700000000)


def test_payload_is_json_with_the_count() -> None:
    doc = json.loads(payload(_batch(7), "mx.example.test"))
    assert (doc["kind"], doc["count"], doc["host"]) == ("virus", 7, "mx.example.test")
    assert doc["fields"]["signature"] == "Eicar-Test-Signature" and len(doc["events"]) == 5


def test_key_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(KEY + b"\n")
    assert read_key(path) == KEY
    path.write_bytes(b"short")
    with pytest.raises(Exception, match="fewer than 16"):
        read_key(path)


async def _until(check: Any, rounds: int = 400) -> None:
    for _ in range(rounds):
        if check():
            return
        await asyncio.sleep(0.025)


async def test_failing_server_is_retried_until_it_answers(receiver: Receiver) -> None:
    channel = _channel(f"http://127.0.0.1:{receiver.port}/hooks/edgeward?x=1")
    task = asyncio.get_running_loop().create_task(channel.run())
    try:
        assert (await channel.send(_batch(3))).startswith("queued")
        await _until(lambda: channel.delivered == 1)
    finally:
        task.cancel()
    assert receiver.attempts == 3  # 500, 503, then 200
    assert receiver.bad_signatures == 0
    [doc] = receiver.received
    assert doc["count"] == 3 and channel.pending() == 0


async def test_a_notice_is_dropped_after_its_retries_and_the_queue_is_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "edgeward.notify.webhook")
    port = free_port()  # nothing listens
    channel = _channel(f"http://127.0.0.1:{port}/", retries=2, queue_size=3)
    for n in range(5):
        await channel.send(_batch(n + 1))
    assert channel.pending() == 3 and channel.dropped == 2  # the two oldest
    task = asyncio.get_running_loop().create_task(channel.run())
    try:
        await _until(lambda: channel.pending() == 0)
    finally:
        task.cancel()
    assert channel.dropped == 5 and channel.delivered == 0
    # Loud but bounded: one ERROR line for the first failure, the next ones counted (a minute).
    errors = [r for r in caplog.records if r.name == "edgeward.notify.webhook"]
    assert len(errors) == 1 and errors[0].levelno == logging.ERROR


async def test_https_with_a_private_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    r = Receiver(tls=server_ctx)
    try:
        channel = _channel(f"https://localhost:{r.port}/hook", ca_file=ca_file)
        assert await channel.post(payload(_batch(), "mx.example.test")) == 200
        untrusted = _channel(f"https://localhost:{r.port}/hook")  # the system's CAs only
        with pytest.raises(ssl.SSLError):
            await untrusted.post(payload(_batch(), "mx.example.test"))
    finally:
        r.stop()
    assert len(r.received) == 1 and r.bad_signatures == 0


async def test_a_down_webhook_does_not_hold_back_mail_notices(tmp_path: Path) -> None:
    """E-mail notices reach the spool while the webhook's server refuses every connection."""
    (tmp_path / "hook.key").write_bytes(KEY)
    config = Config.model_validate({
        "server": {"hostname": "mx.example.test", "data_dir": str(tmp_path)},
        "accepted_domains": ["example.test"],
        "notify": {
            "admin_addresses": ["admin@example.test"],
            "webhook": {"url": f"http://127.0.0.1:{free_port()}/", "key_file": "hook.key", "backoff": 0.05},
        },
    })  # fmt: skip
    spool = Spool(tmp_path / "queue", fsync=False)
    notifier = build_notifier(config, spool.accept)
    assert isinstance(notifier, Notifier)
    [_email, webhook] = notifier.channels
    assert isinstance(webhook, WebhookChannel)
    task = asyncio.get_running_loop().create_task(notifier.run())
    try:
        for n in range(3):
            notifier.emit(Event.make("engine_down", "error", "clamd down", engine=f"clamd{n}"))
        await _until(lambda: len(spool.list()) == 3)
        assert len(spool.list()) == 3
        assert webhook.pending() >= 1 and webhook.delivered == 0  # still retrying, behind nothing
    finally:
        task.cancel()
    [record] = spool.list()[:1]
    assert record.mail_from == ""
    assert b"From: Edgeward <postmaster@example.test>" in spool.read_data(record.id)


def test_configuration_refuses_an_unsigned_or_odd_webhook() -> None:
    with pytest.raises(ValueError, match="key_file is required"):
        WebhookConfig(url="https://hooks.example.test/x")
    for url in ("ftp://hooks.example.test/", "https://hooks.example.test/a b", "https:///nohost"):
        with pytest.raises(ValueError, match="http"):
            WebhookConfig(url=url, key_file=Path("k"))
