"""The DATA body in bounded chunks: the same bytes on the wire as a whole-message write."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from edgeward.config.schema import SendConnectorConfig
from edgeward.delivery.body import chunks, stuffed
from edgeward.delivery.client import SmtpClient
from edgeward.delivery.results import Deferred, Delivered
from edgeward.delivery.routing import Route
from edgeward.queue.model import MessageRecord, RecipientRecord

from .conftest import Downstream, Sink, free_port

_LEADING_DOT = re.compile(rb"(?m)^\.")  # the reference: every line that starts with a dot

_lines = st.lists(
    st.one_of(st.just(b""), st.just(b"."), st.just(b".."), st.binary(max_size=40).map(
        lambda b: b.replace(b"\r", b"").replace(b"\n", b"")
    ), st.text("x.", max_size=12).map(str.encode)),
    max_size=60,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(_lines, st.integers(min_value=1, max_value=50))
def test_chunks_stuffed_one_by_one_equal_the_whole_stuffed(lines: list[bytes], size: int) -> None:
    data = b"".join(line + b"\r\n" for line in lines)
    spans = chunks(data, size)
    assert b"".join(data[a:b] for a, b in spans) == data
    assert all(b > a for a, b in spans)
    assert b"".join(stuffed(data, a, b) for a, b in spans) == _LEADING_DOT.sub(b"..", data)


def test_a_line_longer_than_a_chunk_is_cut_but_never_between_cr_and_lf() -> None:
    data = b"x" * 9 + b"\r\n.dot\r\n"
    spans = chunks(data, 10)  # the first cut would fall between CR and LF
    assert all(data[b - 1 : b] != b"\r" for _a, b in spans[:-1])
    assert b"".join(stuffed(data, a, b) for a, b in spans) == b"x" * 9 + b"\r\n..dot\r\n"


def _message(size: int) -> bytes:
    head = b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: big\r\n\r\n"
    # Dots at line starts everywhere, so many fall on chunk boundaries.
    line = b".dotted line of a large message, 64 bytes long.............\r\n"
    return head + line * (size // len(line)) + b".\r\n..\r\nend\r\n"


def _connector(port: int, timeout: float = 10) -> SendConnectorConfig:
    return SendConnectorConfig(
        name="out", address_spaces=("*",), smart_hosts=(f"127.0.0.1:{port}",),  # type: ignore[arg-type]
        fqdn="gw.edgeward.test", connect_timeout=5, command_timeout=timeout,
        max_message_size=200_000_000,
    )  # fmt: skip


async def _send(conn: SendConnectorConfig, data: bytes) -> Delivered | Deferred | object:
    rec = MessageRecord("MSG1", "a@src.test", (RecipientRecord("b@dst.test"),), time.time(), len(data))
    client = SmtpClient(conn, helo_name="ignored.test")
    try:
        return (await client.deliver(Route(conn, "out"), rec, rec.recipients, data))["b@dst.test"]
    finally:
        await client.close()


async def test_a_large_message_arrives_byte_for_byte_at_aiosmtpd(
    downstream: Callable[..., Downstream],
) -> None:
    ds = downstream(data_size_limit=0)
    data = _message(3_000_000)
    assert isinstance(await _send(_connector(ds.port), data), Delivered)
    [msg] = ds.handler.messages
    assert hashlib.sha256(msg.data).hexdigest() == hashlib.sha256(data).hexdigest()


async def test_a_large_message_arrives_whole_at_smtp_sink(smtp_sink: Callable[..., Sink]) -> None:
    sink = smtp_sink()
    data = _message(2_000_000)
    assert isinstance(await _send(_connector(sink.port), data), Delivered)
    [dump] = sink.messages()
    # smtp-sink unstuffs and writes LF line ends after its X- envelope lines.
    assert dump.endswith(data.replace(b"\r\n", b"\n") + b"\n")


async def test_a_next_hop_that_stops_reading_is_given_up_on_after_the_timeout() -> None:
    stop_reading = asyncio.Event()
    handlers: list[tuple[asyncio.Task[object], asyncio.StreamWriter]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append((task, writer))
        writer.write(b"220 stuck.test ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                stop_reading.set()
                await asyncio.sleep(30)  # never reads the body
                return
            writer.write(b"250-stuck.test\r\n250 SIZE 0\r\n" if verb == b"EHLO" else b"250 ok\r\n")
            await writer.drain()

    port = free_port()
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        started = time.monotonic()
        got = await asyncio.wait_for(_send(_connector(port, timeout=1), _message(64_000_000)), 60)
        assert isinstance(got, Deferred)
        assert stop_reading.is_set()
        assert time.monotonic() - started < 30  # the writer's timeout ended it, not the server
    finally:
        server.close()
        for task, writer in handlers:
            task.cancel()
            writer.transport.abort()
        await asyncio.gather(*(t for t, _w in handlers), return_exceptions=True)
        await server.wait_closed()
