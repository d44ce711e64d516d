"""The two load generators: Postfix's ``smtp-source`` and a timing asyncio client.

``smtp-source`` gives the acceptance rate (and, with the sink, the end-to-end rate) but no
per-message latency, so a second, separate pass uses :func:`timed_load`: the same number of
parallel sessions and the same message sizes, without command pipelining (each command waits
for its reply, as ``smtp-source`` does), timing each transaction from the moment MAIL FROM is
written to the moment the 250 after the final "." is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import subprocess
import time
from dataclasses import dataclass

from relay.procs import BenchError

SENDER = "sender@bench.test"
RECIPIENT = "rcpt@bench.test"
HELO_NAME = "client.bench.test"
REPLY_TIMEOUT = 120.0


def run_smtp_source(
    port: int,
    sessions: int,
    messages: int,
    size: int,
    reuse: bool,
    timeout: float,
    binary: str = "smtp-source",
) -> float:
    """Send ``messages`` messages of ``size`` body bytes with ``smtp-source``; return the seconds taken.

    Without ``-d`` smtp-source opens a new connection for every message (its default), which is
    what an inbound gateway mostly sees; ``reuse`` sends them all over ``sessions`` connections.
    """
    cmd = [binary, "-s", str(sessions), "-m", str(messages), "-l", str(size), "-M", HELO_NAME]
    cmd += ["-f", SENDER, "-t", RECIPIENT, *(["-d"] if reuse else []), f"127.0.0.1:{port}"]
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"smtp-source did not finish within {timeout:.0f}s") from exc
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise BenchError(f"smtp-source exited with {done.returncode}: {(done.stderr or done.stdout).strip()}")
    return elapsed


def message_body(size: int) -> bytes:
    """``size`` bytes of body in 80-byte lines (78 characters + CRLF), like smtp-source's filler."""
    line = b"X" * 78 + b"\r\n"
    full, rest = divmod(size, len(line))
    tail = b"X" * max(rest - 2, 0) + b"\r\n" if rest else b""
    return line * full + tail


@dataclass
class TimedResult:
    latencies: list[float]
    elapsed: float


class _Smtp:
    """A minimal SMTP client over asyncio streams; every command waits for its reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self, expect: str) -> None:
        lines: list[str] = []
        async with asyncio.timeout(REPLY_TIMEOUT):
            while True:
                line = await self.reader.readline()
                if not line:
                    raise BenchError(f"connection closed while waiting for {expect} (after {lines!r})")
                lines.append(line.decode("ascii", "replace").rstrip())
                if len(line) < 4 or line[3:4] != b"-":
                    break
        if not lines[-1].startswith(expect):
            raise BenchError(f"expected {expect}, got {' / '.join(lines)!r}")

    async def command(self, text: bytes, expect: str) -> None:
        self.writer.write(text)
        await self.reply(expect)

    async def transaction(self, body: bytes, seq: int) -> float:
        headers = (
            f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\n"
            f"Date: {email.utils.formatdate(localtime=False)}\r\n"
            f"Message-Id: <{seq}.{time.time_ns()}@{HELO_NAME}>\r\n"
            f"Subject: bench {seq}\r\n\r\n"
        ).encode()
        start = time.perf_counter()
        await self.command(f"MAIL FROM:<{SENDER}>\r\n".encode(), "250")
        await self.command(f"RCPT TO:<{RECIPIENT}>\r\n".encode(), "250")
        await self.command(b"DATA\r\n", "354")
        self.writer.write(headers)
        self.writer.write(body)
        self.writer.write(b".\r\n")
        await self.reply("250")
        return time.perf_counter() - start


async def _open(port: int) -> _Smtp:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    smtp = _Smtp(reader, writer)
    await smtp.reply("220")
    await smtp.command(f"EHLO {HELO_NAME}\r\n".encode(), "250")
    return smtp


async def _close(smtp: _Smtp) -> None:
    try:
        await smtp.command(b"QUIT\r\n", "221")
    finally:
        smtp.writer.close()
        with contextlib.suppress(OSError):
            await smtp.writer.wait_closed()


async def _timed_load(port: int, sessions: int, messages: int, size: int, reuse: bool) -> TimedResult:
    body = message_body(size)
    latencies: list[float] = []
    next_seq = iter(range(messages))

    async def worker() -> None:
        smtp: _Smtp | None = None
        try:
            for seq in next_seq:
                if smtp is None:
                    smtp = await _open(port)
                latencies.append(await smtp.transaction(body, seq))
                if not reuse:
                    await _close(smtp)
                    smtp = None
            if smtp is not None:
                await _close(smtp)
                smtp = None
        finally:
            # On failure or cancellation (Ctrl-C) just drop the connection: awaiting a QUIT
            # reply here could raise a second error that would hide the first.
            if smtp is not None:
                smtp.writer.close()

    start = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        for _ in range(sessions):
            tg.create_task(worker())
    return TimedResult(latencies, time.monotonic() - start)


def timed_load(
    port: int, sessions: int, messages: int, size: int, reuse: bool, timeout: float
) -> TimedResult:
    """Run the timing client; raise :class:`BenchError` on any failed transaction or time-out."""

    async def bounded() -> TimedResult:
        async with asyncio.timeout(timeout):
            return await _timed_load(port, sessions, messages, size, reuse)

    try:
        return asyncio.run(bounded())
    except TimeoutError as exc:
        raise BenchError(f"timed client did not finish within {timeout:.0f}s") from exc
    except ExceptionGroup as group:
        # TaskGroup wraps the first failing session's error (and any that failed with it).
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise BenchError(f"timed client failed: {type(first).__name__}: {first}") from first


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation): with 200 samples p99 is the 2nd largest."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]
