"""The receiving process's own /metrics listener, over a real loopback socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest
from prometheus_client import CollectorRegistry, Counter

from edgeward.server.metrics_http import HEAD_LIMIT, MetricsListener, allowed
from tests.ports import free_port

ALLOW: list[str] = ["127.0.0.0/8"]


@pytest.fixture
async def port() -> AsyncIterator[int]:
    registry = CollectorRegistry()
    Counter("edgeward_probe", "a probe", ["kind"], registry=registry).labels("x").inc(3)
    number = free_port()
    listener = MetricsListener(f"127.0.0.1:{number}", registry, lambda: ALLOW)
    task = asyncio.create_task(listener.serve())
    for _ in range(100):
        with contextlib.suppress(OSError):
            _, w = await asyncio.open_connection("127.0.0.1", number)
            w.close()
            break
        await asyncio.sleep(0.02)
    yield number
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _ask(port: int, request: bytes) -> tuple[str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode(), body


async def test_get_metrics_answers_the_registry(port: int) -> None:
    status, body = await _ask(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == "HTTP/1.1 200 OK"
    assert b'edgeward_probe_total{kind="x"} 3.0' in body


async def test_head_answers_without_a_body(port: int) -> None:
    status, body = await _ask(port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
    assert status == "HTTP/1.1 200 OK" and body == b""


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "404 Not Found"),
        (b"GET /metrics/../etc HTTP/1.1\r\n\r\n", "404 Not Found"),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "405 Method Not Allowed"),
        (b"HELO there\r\n\r\n", "400 Bad Request"),
        (b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"a" * HEAD_LIMIT + b"\r\n\r\n", "400 Bad Request"),
    ],
)
async def test_anything_else_gets_a_clear_http_error(port: int, request_bytes: bytes, status: str) -> None:
    got, _ = await _ask(port, request_bytes)
    assert got == f"HTTP/1.1 {status}"


async def test_a_client_outside_the_allowed_networks_gets_403(port: int) -> None:
    ALLOW[:] = ["192.0.2.0/24"]
    try:
        status, body = await _ask(port, b"GET /metrics HTTP/1.1\r\n\r\n")
    finally:
        ALLOW[:] = ["127.0.0.0/8"]
    assert status == "HTTP/1.1 403 Forbidden" and b"edgeward_probe" not in body


@pytest.mark.parametrize(
    ("host", "networks", "expected"),
    [
        ("127.0.0.1", ["127.0.0.1/8"], True),
        ("::ffff:127.0.0.1", ["127.0.0.1/8"], True),
        ("::1", ["127.0.0.1/8"], False),
        ("testclient", ["0.0.0.0/0"], False),
    ],
)
def test_allowed(host: str, networks: Sequence[str], expected: bool) -> None:
    assert allowed(host, networks) is expected
