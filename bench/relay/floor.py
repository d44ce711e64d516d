"""The Python floor: the least a durable SMTP relay in Python does, to measure what it costs.

It keeps the guarantees ``bench/smtp_relay_bench.py`` asks of every relay and nothing else:

- receive on an asyncio Protocol: banner, EHLO/HELO (8BITMIME, PIPELINING, SIZE), MAIL, RCPT,
  DATA, RSET, NOOP, QUIT; command lines limited to ``MAX_LINE`` bytes, messages to ``MAX_SIZE``;
  the end of DATA found and the dots unstuffed with bytes operations on the whole buffer;
- durability: envelope and data written to one file in the queue folder, ``fdatasync``-ed,
  renamed into place and the folder ``fsync``-ed before the 250 after DATA. Messages that end
  while a round of writes runs in the worker thread share the next round (group commit);
- delivery to one smart host over up to ``CONNECTIONS`` reused connections, PIPELINING where the
  server offers it; the file is removed (and the folder fsynced, again in rounds) only after the
  server's 250; a failure is retried with a doubling back-off;
- one log line per delivery attempt that ends (sent, bounced, deferred) in a log file.

No TLS, no policy, no content checks, no bounce messages (a 5xx is logged and the message
dropped), no idle timeouts. It is not part of Edgeward; it only sets a floor to compare with.

``--processes 1`` receives and delivers in one process; ``--processes 2`` forks a delivery
process that gets each new message's id through a pipe and reads its file (Edgeward's model).

    python bench/relay/floor.py --listen 127.0.0.1:2525 --smart-host 127.0.0.1:2526 --dir /var/tmp/floor
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

MAX_SIZE = 10 * 1024 * 1024
# RFC 5321 asks servers to take 512-byte command lines; MAIL's parameters need a little more.
MAX_LINE = 2048
MAX_RECIPIENTS = 100
CONNECTIONS = 20
WRITERS = 8
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0
TRANSACTION_TIMEOUT = 120.0
# A client that keeps sending while its message is being committed is not read from past this.
PAUSE_ABOVE = 256 * 1024
_PRINTABLE = bytes(range(33, 127))

T = TypeVar("T")


@dataclass(slots=True)
class Message:
    msg_id: str
    sender: bytes
    recipients: list[bytes]
    data: bytes  # unstuffed, line ends as received, ending in CRLF unless empty
    received: float
    attempts: int = 0


def envelope(msg: Message) -> bytes:
    """The queue file's first lines: R<time>, F<sender>, T<recipient>..., then an empty line.

    Every line starts with a letter, so the first empty line ends the envelope unambiguously.
    """
    rcpts = b"".join(b"T" + r + b"\n" for r in msg.recipients)
    return b"R%.6f\nF%s\n%s\n" % (msg.received, msg.sender, rcpts)


def parse_file(msg_id: str, raw: bytes) -> Message:
    end = raw.index(b"\n\n")
    received, sender, recipients = 0.0, b"", []
    for line in raw[:end].split(b"\n"):
        kind, value = line[:1], line[1:]
        if kind == b"R":
            received = float(value)
        elif kind == b"F":
            sender = value
        elif kind == b"T":
            recipients.append(value)
    return Message(msg_id, sender, recipients, raw[end + 2 :], received)


def sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Rounds(Generic[T]):
    """Runs ``work`` on batches in one worker thread; whatever is submitted while a batch runs
    goes into the next one, so concurrent messages share one folder fsync.

    ``work`` returns one error (or None) per item, in order.
    """

    def __init__(self, work: Callable[[list[T]], list[OSError | None]], name: str) -> None:
        self._work = work
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=name)

    def submit(self, item: T) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((item, future))
        if self._task is None:
            self._task = loop.create_task(self._run())
        return future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    errors = await loop.run_in_executor(self._thread, self._work, [i for i, _ in batch])
                except OSError as exc:
                    errors = [exc] * len(batch)
                for (_, future), error in zip(batch, errors, strict=True):
                    if future.done():
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
        finally:
            self._task = None


class QueueDir:
    """The queue folder: ``<id>.tmp`` while being written, ``<id>.msg`` once durable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.commits: Rounds[Message] = Rounds(self._commit_round, "floor-commit")
        self.removals: Rounds[str] = Rounds(self._remove_round, "floor-remove")
        self._writers: ThreadPoolExecutor | None = None

    def drop_partial(self) -> None:
        """Remove half-written files of a round a previous run never finished (their clients got
        no 250). Only before anything receives: a running round's files are ``.tmp`` too."""
        for entry in os.scandir(self.path):
            if entry.name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def durable(self) -> list[Message]:
        """The messages a previous run made durable and did not finish delivering."""
        names = sorted(e.name for e in os.scandir(self.path) if e.name.endswith(".msg"))
        return [self.load(name[:-4]) for name in names]

    def load(self, msg_id: str) -> Message:
        with open(self.path / f"{msg_id}.msg", "rb") as f:
            return parse_file(msg_id, f.read())

    def _commit_round(self, batch: list[Message]) -> list[OSError | None]:
        # Flushing several files from several threads at once lets ext4's journal cover them
        # with one commit; Edgeward's committer (src/edgeward/queue/commit.py) measured it.
        if len(batch) == 1:
            errors = [self._write(batch[0])]
        else:
            if self._writers is None:
                self._writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="floor-write")
            errors = list(self._writers.map(self._write, batch))
        try:
            for msg, error in zip(batch, errors, strict=True):
                if error is None:
                    os.rename(self.path / f"{msg.msg_id}.tmp", self.path / f"{msg.msg_id}.msg")
            sync_dir(self.path)
        except OSError as exc:
            # Take the whole round back: its clients get 451 and send again.
            for msg in batch:
                for suffix in (".tmp", ".msg"):
                    with contextlib.suppress(OSError):
                        os.unlink(self.path / f"{msg.msg_id}{suffix}")
            return [exc] * len(batch)
        return errors

    def _write(self, msg: Message) -> OSError | None:
        path = self.path / f"{msg.msg_id}.tmp"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                head = envelope(msg)
                # writev: the envelope and the data reach the file without being joined first.
                done = os.writev(fd, [head, msg.data])
                rest = memoryview(head + msg.data)[done:] if done < len(head) + len(msg.data) else b""
                while rest:
                    rest = rest[os.write(fd, rest) :]
                os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return exc
        return None

    def _remove_round(self, ids: list[str]) -> list[OSError | None]:
        for msg_id in ids:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path / f"{msg_id}.msg")
        sync_dir(self.path)
        return [None] * len(ids)


# -- receiving ---------------------------------------------------------------------------------


class Receiver:
    """What every session shares: the queue, the next message id, where queued messages go."""

    def __init__(self, queue: QueueDir, hostname: str, on_queued: Callable[[Message], None]) -> None:
        self.queue = queue
        self.on_queued = on_queued
        self.banner = b"220 %s ESMTP floor\r\n" % hostname.encode()
        self.ehlo = b"250-%s\r\n250-PIPELINING\r\n250-SIZE %d\r\n250 8BITMIME\r\n" % (
            hostname.encode(),
            MAX_SIZE,
        )
        self.helo = b"250 %s\r\n" % hostname.encode()
        # Start time in the id: files left by an earlier run never collide with new ones.
        self._prefix = f"{time.time_ns():X}"
        self._seq = 0

    def new_id(self) -> str:
        self._seq += 1
        return f"{self._prefix}.{self._seq:X}"


def _address(arg: bytes, keyword: bytes) -> tuple[bytes, list[bytes]] | None:
    """``FROM:<a@b> SIZE=1`` -> (b"a@b", [b"SIZE=1"]); None when malformed."""
    if arg[: len(keyword)].upper() != keyword:
        return None
    rest = arg[len(keyword) :].lstrip(b" ")
    close = rest.find(b">")
    if not rest.startswith(b"<") or close < 0:
        return None
    addr = rest[1:close]
    if addr.translate(None, _PRINTABLE):
        return None
    return addr, rest[close + 1 :].split()


class Session(asyncio.Protocol):
    def __init__(self, receiver: Receiver) -> None:
        self.r = receiver
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.out: list[bytes] = []
        self.greeted = False
        self.sender: bytes | None = None
        self.recipients: list[bytes] = []
        self.in_data = False
        self.scanned = 0  # bytes of DATA already searched for the terminator
        self.too_big = False
        self.busy = False  # a message is being committed: later commands wait for its reply
        self.paused = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods but not its class.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.r.banner)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._process()
        elif len(self.buf) > PAUSE_ABOVE and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _process(self) -> None:
        # Every complete command in the buffer is answered, and the replies go out in one write.
        while not self.busy and not self.closed:
            if self.in_data:
                if not self._data():
                    break
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                if len(self.buf) > MAX_LINE:
                    self.out.append(b"500 5.5.0 Line too long\r\n")
                    self._close()
                break
            if end > MAX_LINE:
                del self.buf[: end + 2]
                self.out.append(b"500 5.5.0 Line too long\r\n")
                continue
            line = bytes(self.buf[:end])
            del self.buf[: end + 2]
            self._command(line)
        self._flush()

    def _flush(self) -> None:
        if self.out and self.transport is not None and not self.closed:
            self.transport.write(self.out[0] if len(self.out) == 1 else b"".join(self.out))
        self.out.clear()

    def _close(self) -> None:
        self._flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _reset(self) -> None:
        self.sender = None
        self.recipients = []

    def _command(self, line: bytes) -> None:
        verb = line[:4].upper()
        out = self.out
        if verb == b"MAIL":
            self._mail(line[5:])
        elif verb == b"RCPT":
            self._rcpt(line[5:])
        elif verb == b"DATA":
            if self.sender is None or not self.recipients:
                out.append(b"503 5.5.1 Need RCPT first\r\n")
            else:
                out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                self.in_data = True
                # A CRLF in front makes an empty message's "." line one more "\r\n.\r\n".
                self.buf[0:0] = b"\r\n"
                self.scanned = 0
                self.too_big = False
        elif verb == b"EHLO" or verb == b"HELO":
            if len(line) < 6:
                out.append(b"501 5.5.4 Hostname required\r\n")
                return
            self.greeted = True
            self._reset()
            out.append(self.r.ehlo if verb == b"EHLO" else self.r.helo)
        elif verb == b"RSET":
            self._reset()
            out.append(b"250 2.0.0 Ok\r\n")
        elif verb == b"NOOP":
            out.append(b"250 2.0.0 Ok\r\n")
        elif verb == b"QUIT":
            out.append(b"221 2.0.0 Bye\r\n")
            self._close()
        else:
            out.append(b"502 5.5.2 Command not recognised\r\n")

    def _mail(self, arg: bytes) -> None:
        if not self.greeted:
            self.out.append(b"503 5.5.1 Send EHLO or HELO first\r\n")
            return
        if self.sender is not None:
            self.out.append(b"503 5.5.1 Nested MAIL command\r\n")
            return
        parsed = _address(arg, b"FROM:")
        if parsed is None:
            self.out.append(b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
            return
        addr, params = parsed
        for p in params:
            if p[:5].upper() == b"SIZE=" and p[5:].isdigit() and int(p[5:]) > MAX_SIZE:
                self.out.append(b"552 5.3.4 Message size exceeds fixed limit\r\n")
                return
        self.sender = addr
        self.out.append(b"250 2.1.0 Ok\r\n")

    def _rcpt(self, arg: bytes) -> None:
        if self.sender is None:
            self.out.append(b"503 5.5.1 Need MAIL first\r\n")
            return
        parsed = _address(arg, b"TO:")
        if parsed is None or not parsed[0]:
            self.out.append(b"501 5.5.4 Syntax: RCPT TO:<address>\r\n")
            return
        if len(self.recipients) >= MAX_RECIPIENTS:
            self.out.append(b"452 4.5.3 Too many recipients\r\n")
            return
        self.recipients.append(parsed[0])
        self.out.append(b"250 2.1.5 Ok\r\n")

    def _data(self) -> bool:
        """Look for the end of DATA; True once a message ended (and was handed on or refused)."""
        buf = self.buf
        end = buf.find(b"\r\n.\r\n", max(self.scanned - 4, 0))
        if end < 0:
            if len(buf) > MAX_SIZE + 2:
                # Keep reading to the terminator, but only the tail that may hold part of it.
                self.too_big = True
                del buf[:-4]
            self.scanned = len(buf)
            return False
        self.in_data = False
        if self.too_big:
            del buf[: end + 5]
            self._reset()
            self.out.append(b"552 5.3.4 Message too big\r\n")
            return True
        data = bytes(buf[2 : end + 2])  # without the CRLF put in front at DATA
        del buf[: end + 5]
        if data.startswith(b".."):
            data = data[1:]
        data = data.replace(b"\r\n..", b"\r\n.")
        assert self.sender is not None
        msg = Message(self.r.new_id(), self.sender, self.recipients, data, time.time())
        self._reset()
        self.busy = True
        self._flush()
        self.r.queue.commits.submit(msg).add_done_callback(partial(self._committed, msg))
        return True

    def _committed(self, msg: Message, future: asyncio.Future[None]) -> None:
        self.busy = False
        if future.exception() is None:
            # Delivered even if the client hung up meanwhile: the message is safe on disk.
            self.r.on_queued(msg)
            self.out.append(b"250 2.0.0 Ok: queued as %s\r\n" % msg.msg_id.encode())
        else:
            self.out.append(b"451 4.3.0 Cannot store the message\r\n")
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()
        self._process()


# -- delivering --------------------------------------------------------------------------------


class Client(asyncio.Protocol):
    """One connection to the smart host; replies are parsed as they arrive and queued."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.lines: list[bytes] = []
        self.replies: deque[tuple[int, bytes]] = deque()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost: Exception | None = None
        self.pipelining = False
        self.size = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods but not its class.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("the server closed the connection")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n")) >= 0:
            line = bytes(self.buf[:end])
            del self.buf[: end + 2]
            self.lines.append(line)
            if line[3:4] == b"-":
                continue
            try:
                code = int(line[:3])
            except ValueError:
                code = 0  # not SMTP: reported as a failed reply and the connection dropped
            reply = (code, b" / ".join(self.lines))
            self.lines = []
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(reply)
                self.waiter = None
            else:
                self.replies.append(reply)

    async def reply(self) -> tuple[int, bytes]:
        if self.replies:
            return self.replies.popleft()
        if self.lost is not None:
            raise self.lost
        self.waiter = asyncio.get_running_loop().create_future()
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    @classmethod
    async def open(cls, host: str, port: int, hostname: str) -> Client:
        _, c = await asyncio.get_running_loop().create_connection(cls, host, port)
        assert c.transport is not None
        try:
            code, text = await c.reply()
            if code != 220:
                raise ConnectionError(f"greeting: {text.decode(errors='replace')}")
            c.transport.write(b"EHLO %s\r\n" % hostname.encode())
            code, text = await c.reply()
            if code == 250:
                exts = text.upper()
                c.pipelining = b"PIPELINING" in exts
                c.size = b"SIZE" in exts
            else:
                c.transport.write(b"HELO %s\r\n" % hostname.encode())
                code, text = await c.reply()
                if code != 250:
                    raise ConnectionError(f"HELO: {text.decode(errors='replace')}")
        except BaseException:
            c.close()
            raise
        return c

    async def send(self, msg: Message) -> Outcome:
        """One transaction; the connection stays usable only if the outcome is all sent."""
        assert self.transport is not None
        t = self.transport
        mail = b"MAIL FROM:<%s>%s\r\n" % (msg.sender, b" SIZE=%d" % len(msg.data) if self.size else b"")
        rcpts = [b"RCPT TO:<%s>\r\n" % r for r in msg.recipients]
        if self.pipelining:
            t.write(b"".join([mail, *rcpts, b"DATA\r\n"]))
            mail_reply = await self.reply()
            rcpt_replies = [await self.reply() for _ in rcpts]
            data_reply = await self.reply()
        else:
            t.write(mail)
            mail_reply = await self.reply()
            if mail_reply[0] // 100 != 2:
                return Outcome.all_of(msg.recipients, mail_reply)
            rcpt_replies = []
            for cmd in rcpts:
                t.write(cmd)
                rcpt_replies.append(await self.reply())
            data_reply = (0, b"")
            if any(c // 100 == 2 for c, _ in rcpt_replies):
                t.write(b"DATA\r\n")
                data_reply = await self.reply()
        if mail_reply[0] // 100 != 2:
            return Outcome.all_of(msg.recipients, mail_reply)
        out = Outcome()
        accepted = []
        for rcpt, reply in zip(msg.recipients, rcpt_replies, strict=True):
            if reply[0] // 100 == 2:
                accepted.append(rcpt)
            else:
                out.add(rcpt, reply)
        if not accepted:
            return out
        if data_reply[0] != 354:
            return Outcome.all_of(msg.recipients, data_reply)
        data = msg.data
        if data:
            stuffed = data.replace(b"\r\n.", b"\r\n..")
            if stuffed.startswith(b"."):
                stuffed = b"." + stuffed
            if not stuffed.endswith(b"\r\n"):
                stuffed += b"\r\n"
            t.write(stuffed)
        t.write(b".\r\n")
        final = await self.reply()
        for rcpt in accepted:
            out.add(rcpt, final)
        return out


@dataclass(slots=True)
class Outcome:
    sent: list[bytes] = field(default_factory=list)
    deferred: list[bytes] = field(default_factory=list)
    failed: list[bytes] = field(default_factory=list)
    reply: bytes = b""

    def add(self, rcpt: bytes, reply: tuple[int, bytes]) -> None:
        code = reply[0] // 100
        (self.sent if code == 2 else self.failed if code == 5 else self.deferred).append(rcpt)
        if code != 2 or not self.reply:
            self.reply = reply[1]

    @classmethod
    def all_of(cls, rcpts: list[bytes], reply: tuple[int, bytes]) -> Outcome:
        out = cls()
        for r in rcpts:
            out.add(r, reply)
        return out


class Delivery:
    """Up to ``CONNECTIONS`` workers, each with its own reused connection to the smart host."""

    def __init__(self, queue: QueueDir, host: str, port: int, hostname: str, log_path: Path) -> None:
        self.queue = queue
        self.host, self.port, self.hostname = host, port, hostname
        self.todo: asyncio.Queue[Message] = asyncio.Queue()
        self.known: set[str] = set()
        self.log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.workers = [asyncio.get_running_loop().create_task(self._worker()) for _ in range(CONNECTIONS)]

    def put(self, msg: Message) -> None:
        # A message can be both found at start-up and announced by the receiver: deliver it once.
        if msg.msg_id not in self.known:
            self.known.add(msg.msg_id)
            self.todo.put_nowait(msg)

    def _log(self, msg: Message, status: str, rcpts: list[bytes], reply: bytes) -> None:
        now = time.time()
        sender = msg.sender.decode(errors="replace")
        to = b">,<".join(rcpts).decode(errors="replace")
        line = (
            f"{now:.6f} {msg.msg_id} from=<{sender}> to=<{to}> size={len(msg.data)}"
            f" delay={now - msg.received:.3f} status={status} ({reply.decode(errors='replace')})\n"
        )
        os.write(self.log_fd, line.encode())

    async def _worker(self) -> None:
        conn: Client | None = None
        while True:
            msg = await self.todo.get()
            reused = conn is not None
            timer: asyncio.TimerHandle | None = None
            try:
                if conn is None:
                    conn = await asyncio.wait_for(
                        Client.open(self.host, self.port, self.hostname), TRANSACTION_TIMEOUT
                    )
                # One timer per transaction: aborting the transport fails whichever reply waits.
                timer = asyncio.get_running_loop().call_later(TRANSACTION_TIMEOUT, conn.close)
                out = await conn.send(msg)
            except Exception as exc:  # a worker that died would take its connection slot with it
                if conn is not None:
                    conn.close()
                    conn = None
                if reused:
                    # Most likely the server closed the idle connection: try a new one at once.
                    self.todo.put_nowait(msg)
                else:
                    self._retry(msg, msg.recipients, str(exc).encode() or type(exc).__name__.encode())
                continue
            finally:
                if timer is not None:
                    timer.cancel()
            if out.deferred or out.failed:
                conn.close()
                conn = None
            if out.sent:
                self._log(msg, "sent", out.sent, out.reply)
            if out.failed:
                self._log(msg, "bounced", out.failed, out.reply)
            if out.deferred:
                self._retry(msg, out.deferred, out.reply)
            else:
                self.known.discard(msg.msg_id)
                self.queue.removals.submit(msg.msg_id)

    def _retry(self, msg: Message, rcpts: list[bytes], reply: bytes) -> None:
        self._log(msg, "deferred", rcpts, reply)
        # The file keeps every recipient: after a crash the ones already sent get it again.
        msg.recipients = rcpts
        msg.attempts += 1
        delay = min(BACKOFF_FIRST * 2 ** (msg.attempts - 1), BACKOFF_MAX)
        asyncio.get_running_loop().call_later(delay, self.todo.put_nowait, msg)


class _IdReader(asyncio.Protocol):
    """The delivery process's end of the pipe: one queued message id per line."""

    def __init__(self, on_id: Callable[[str], None], on_eof: Callable[[], None]) -> None:
        self.buf = b""
        self.on_id, self.on_eof = on_id, on_eof

    def data_received(self, data: bytes) -> None:
        *ids, self.buf = (self.buf + data).split(b"\n")
        for i in ids:
            self.on_id(i.decode())

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_eof()


class _IdWriter:
    """The receiving process's end: ids of one turn of the loop go out in one write."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self.transport = transport
        self.pending: list[bytes] = []

    def __call__(self, msg: Message) -> None:
        if not self.pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self.pending.append(msg.msg_id.encode() + b"\n")

    def _flush(self) -> None:
        self.transport.write(b"".join(self.pending))
        self.pending.clear()


# -- processes ---------------------------------------------------------------------------------


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _receive(args: argparse.Namespace, queue: QueueDir, on_queued: Callable[[Message], None]) -> None:
    host, port = _host_port(args.listen)
    receiver = Receiver(queue, args.hostname, on_queued)
    server = await asyncio.get_running_loop().create_server(
        lambda: Session(receiver), host, port, reuse_address=True, backlog=1024
    )
    async with server:
        await _until_signalled()


def _delivery(args: argparse.Namespace, queue: QueueDir) -> Delivery:
    host, port = _host_port(args.smart_host)
    delivery = Delivery(queue, host, port, args.hostname, args.log)
    delivery.start()
    for msg in queue.durable():
        delivery.put(msg)
    return delivery


async def run_one(args: argparse.Namespace) -> None:
    queue = QueueDir(args.dir)
    queue.drop_partial()
    delivery = _delivery(args, queue)
    await _receive(args, queue, delivery.put)


async def run_receiver(args: argparse.Namespace, write_fd: int) -> None:
    queue = QueueDir(args.dir)
    transport, _ = await asyncio.get_running_loop().connect_write_pipe(
        asyncio.Protocol, os.fdopen(write_fd, "wb", buffering=0)
    )
    await _receive(args, queue, _IdWriter(transport))


async def run_deliverer(args: argparse.Namespace, read_fd: int) -> None:
    queue = QueueDir(args.dir)
    delivery = _delivery(args, queue)
    gone = asyncio.Event()

    def on_id(msg_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            delivery.put(queue.load(msg_id))

    await asyncio.get_running_loop().connect_read_pipe(
        lambda: _IdReader(on_id, gone.set), os.fdopen(read_fd, "rb", buffering=0)
    )
    # SIGTERM from the process group, or the receiver gone (the pipe's end): stop either way.
    stopped = asyncio.ensure_future(_until_signalled())
    await asyncio.wait([stopped, asyncio.ensure_future(gone.wait())], return_when=asyncio.FIRST_COMPLETED)


def _run(main: Callable[[], Coroutine[Any, Any, None]], event_loop: str) -> None:
    if event_loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(main())
            return
    asyncio.run(main())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT to receive on")
    ap.add_argument("--smart-host", required=True, help="HOST:PORT every message is relayed to")
    ap.add_argument("--dir", type=Path, required=True, help="queue folder")
    ap.add_argument("--log", type=Path, help="log file (default: floor.log next to the queue folder)")
    ap.add_argument("--hostname", default="floor.bench.test")
    ap.add_argument("--processes", type=int, choices=(1, 2), default=1, help="1: receive and deliver in one")
    ap.add_argument(
        "--event-loop", choices=("auto", "asyncio"), default="auto", help="auto: uvloop if present"
    )
    args = ap.parse_args(argv)
    args.log = args.log or args.dir.parent / "floor.log"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.processes == 1:
        _run(lambda: run_one(args), args.event_loop)
        return 0
    # The receiver's rounds write .tmp files from its first message on, so clean up before it starts.
    QueueDir(args.dir).drop_partial()
    read_fd, write_fd = os.pipe()
    # Fork before any event loop or thread exists, so the child starts clean.
    child = os.fork()
    if child == 0:
        os.close(write_fd)
        try:
            _run(lambda: run_deliverer(args, read_fd), args.event_loop)
        finally:
            os._exit(0)
    os.close(read_fd)
    try:
        _run(lambda: run_receiver(args, write_fd), args.event_loop)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGTERM)
        os.waitpid(child, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
