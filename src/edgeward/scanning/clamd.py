"""ClamAV through clamd: the ``INSTREAM`` command over its unix or TCP socket.

Protocol (clamd(8)): ``zINSTREAM\\0``, then the item as chunks, each a 4-byte big-endian length
and that many bytes, then a zero length; clamd answers one NUL-terminated line,
``stream: OK``, ``stream: <signature> FOUND`` or ``<reason> ERROR``. The ``z`` prefix asks for
NUL-terminated replies, which cannot be confused with a signature name holding a newline. The
item never touches our disk; clamd holds it in memory (or its own temporary directory) while it
scans.

What clamd gets: clamd unpacks archives and parses MIME itself, so it is sent the top-level
items of the walk (decoded parts, whose ``path`` holds no ``!``) and not the archive members the
walk unpacked from them; the anti-virus agent hands every engine the whole message as one item
when the walk found no parts. A message kept in a file comes as one item backed by the file
(``ScanItem.source``, added when a leaf was too large to keep whole): clamd is then sent that
message alone, read from the file chunk by chunk, since it covers every other item.
Sending members too would scan each archive twice and hit clamd's own limits, which stay the
authority for what is inside an archive (set ``AlertExceedsMax yes`` in clamd.conf so a limit
reached inside an archive is a finding, ``Heuristics.Limits.Exceeded``, not a silent "OK").

Several items go through one IDSESSION (up to ``batch`` per session), a single item through a
plain INSTREAM, under one deadline for the whole message. clamd hands each command of a session
to its thread pool as it arrives, so the items are scanned in parallel without a connection
each. Measured (``bench/clamd_session.py``, 5 items of 20 KB and 20 of 2 KB, a loaded 2-core
machine): the session ran at 1.6-2.3 times the rate of one connection per item in turn, and
within 0.85-1.2 times that of one connection per item all at once, which would take a
descriptor and a clamd connection slot per item. One unanswered item leaves the whole message
unscanned either way, so a shared connection costs no isolation worth having.

Security: anything but a well-formed ``OK`` or ``FOUND`` raises :class:`ScanEngineError`, so an
engine that is down, slow, refused the item (``INSTREAM size limit exceeded``) or answered
garbage never makes an item clean. An item over ``max_stream`` is not sent at all: clamd would
cut the connection mid-stream and the message would be unscanned either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
import time
from collections.abc import Iterator, Sequence

from edgeward.ports import EngineStatus, ScanEngineError, ScanHit, ScanItem
from edgeward.scanning import ItemTooLarge

Address = str | tuple[str, int]

# clamd's answers end with NUL; anything longer than this is not clamd talking.
_MAX_REPLY = 4096
_FOUND = re.compile(r"^(?:\d+: )?stream: (.+) FOUND$")
_OK = re.compile(r"^(?:\d+: )?stream: OK$")
_VERSION = re.compile(r"^ClamAV (\S+?)(?:/(\d+)/(.+))?$")


def clamd_items(items: Sequence[ScanItem]) -> list[ScanItem]:
    """What clamd is sent: the items that are not archive members (all of them if none is)."""
    whole = [item for item in items if item.source is not None]
    if whole:
        return whole[:1]
    top = [item for item in items if "!" not in item.path]
    return top or list(items)


class ClamdScanner:
    """ClamAV via clamd's INSTREAM; ``max_stream`` must not exceed clamd's StreamMaxLength."""

    name = "clamd"

    def __init__(
        self,
        address: Address,
        *,
        timeout: float = 20.0,
        chunk_size: int = 64 * 1024,
        max_stream: int = 25 * 1024 * 1024,
        batch: int = 32,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.max_stream = max_stream
        self.batch = batch

    def __repr__(self) -> str:
        return f"ClamdScanner({self.where})"

    @property
    def where(self) -> str:
        return self.address if isinstance(self.address, str) else f"{self.address[0]}:{self.address[1]}"

    async def scan(self, items: Sequence[ScanItem]) -> list[ScanHit]:
        items = clamd_items(items)
        for item in items:
            if item.size > self.max_stream:
                raise ItemTooLarge(
                    f"clamd: {item.path} is {item.size} bytes, over max_stream {self.max_stream}"
                )
        try:
            async with asyncio.timeout(self.timeout):
                if len(items) == 1:
                    answers = [await self._instream(items[0])]
                else:
                    answers = []
                    for start in range(0, len(items), self.batch):
                        answers += await self._session(items[start : start + self.batch])
        except TimeoutError:
            raise ScanEngineError(f"clamd at {self.where} did not answer within {self.timeout:g}s") from None
        return [ScanHit("AV_INFECTED", self.name, signature, item.path)
                for item, signature in zip(items, answers, strict=True) if signature is not None]  # fmt: skip

    async def status(self) -> EngineStatus:
        try:
            async with asyncio.timeout(self.timeout):
                pong = await self._command(b"zPING\0")
                version = await self._command(b"zVERSION\0")
        except TimeoutError:
            return EngineStatus(self.name, False, detail=f"{self.where}: no answer within {self.timeout:g}s")
        except ScanEngineError as exc:
            return EngineStatus(self.name, False, detail=str(exc))
        m = _VERSION.match(version)
        if pong != "PONG" or m is None:
            return EngineStatus(self.name, False, detail=f"{self.where}: unexpected answer {version[:80]!r}")
        released, db, stamp = m.groups()
        signatures_at = None
        if stamp:
            try:
                # clamd prints the database's build time with ctime(3): the host's local time.
                signatures_at = time.mktime(time.strptime(stamp.strip(), "%a %b %d %H:%M:%S %Y"))
            except ValueError:
                signatures_at = None
        shown = f"ClamAV {released}" + (f", database {db}" if db else ", custom databases only")
        return EngineStatus(self.name, True, shown, signatures_at, detail=self.where)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            if isinstance(self.address, str):
                return await asyncio.open_unix_connection(self.address)
            return await asyncio.open_connection(*self.address)
        except OSError as exc:
            raise ScanEngineError(f"clamd at {self.where} is unreachable: {exc.strerror or exc}") from None

    async def _command(self, command: bytes) -> str:
        reader, writer = await self._connect()
        try:
            writer.write(command)
            await writer.drain()
            return await self._reply(reader)
        except OSError as exc:
            raise ScanEngineError(f"clamd at {self.where}: {exc.strerror or exc}") from None
        finally:
            await _close(writer)

    async def _instream(self, item: ScanItem) -> str | None:
        """The signature clamd found in the item, or None when it is clean."""
        reader, writer = await self._connect()
        try:
            cut = await self._send(writer, [(b"zINSTREAM\0", item)])
            reply = await self._reply(reader, cut)
        finally:
            await _close(writer)
        return self._verdict(reply)

    async def _session(self, items: Sequence[ScanItem]) -> list[str | None]:
        """Every item's verdict through one IDSESSION: clamd numbers the requests from 1 and
        answers ``<n>: stream: ...`` as each scan ends, not necessarily in order."""
        reader, writer = await self._connect()
        try:
            requests = [(b"zIDSESSION\0", None), *((b"zINSTREAM\0", item) for item in items)]
            cut = await self._send(writer, requests)
            replies: dict[int, str] = {}
            while len(replies) < len(items):
                reply = await self._reply(reader, cut)
                number, sep, rest = reply.partition(": ")
                if not sep or not number.isdigit() or not 1 <= int(number) <= len(items):
                    raise ScanEngineError(f"clamd at {self.where}: {reply[:200] or 'no answer'}")
                replies[int(number)] = rest
            with contextlib.suppress(OSError):
                writer.write(b"zEND\0")
                await writer.drain()
        finally:
            await _close(writer)
        return [self._verdict(replies[n]) for n in range(1, len(items) + 1)]

    async def _send(
        self, writer: asyncio.StreamWriter, requests: Sequence[tuple[bytes, ScanItem | None]]
    ) -> OSError | None:
        """Write each command and, when it has one, its stream in length-prefixed chunks.

        Returns the error if clamd cut the connection, which it does when a stream passes its
        StreamMaxLength; its reason may already be in the socket, so the caller reads it.

        Pieces are gathered and written together once they reach ``chunk_size`` (and at the
        end): a write on an idle socket is a system call at once, and one per command, length
        and terminator was the costliest part of asking clamd about a small item."""
        pending: list[bytes | memoryview] = []
        size = 0
        try:
            for command, item in requests:
                pending.append(command)
                if item is None:
                    continue
                for chunk in self._chunks(item):
                    pending += (struct.pack("!L", len(chunk)), chunk)
                    size += len(chunk)
                    if size >= self.chunk_size:
                        writer.writelines(pending)
                        pending, size = [], 0
                        await writer.drain()
                pending.append(b"\0\0\0\0")
            writer.writelines(pending)
            await writer.drain()
        except OSError as exc:
            return exc
        return None

    def _chunks(self, item: ScanItem) -> Iterator[bytes | memoryview]:
        """The item's bytes in pieces; a file-backed one is read a piece at a time, so a message
        kept in a file is never whole in memory (local reads of ``chunk_size``, short enough
        to do on the loop between the socket's drains)."""
        if item.source is not None:
            yield from item.source.chunks(0, None, self.chunk_size)
            return
        view = memoryview(item.data)
        for start in range(0, len(item.data), self.chunk_size):
            yield view[start : start + self.chunk_size]

    def _verdict(self, reply: str) -> str | None:
        if _OK.match(reply):
            return None
        if m := _FOUND.match(reply):
            return m.group(1)
        if "size limit exceeded" in reply:
            raise ItemTooLarge(f"clamd at {self.where}: {reply} (StreamMaxLength is below max_stream)")
        raise ScanEngineError(f"clamd at {self.where}: {reply[:200] or 'no answer'}")

    async def _reply(self, reader: asyncio.StreamReader, cut: OSError | None = None) -> str:
        try:
            raw = await reader.readuntil(b"\0")
        except OSError as exc:
            why = "cut the stream (is StreamMaxLength below max_stream?)" if cut else "failed"
            raise ScanEngineError(f"clamd at {self.where} {why}: {exc.strerror or exc}") from None
        except asyncio.IncompleteReadError as exc:
            raw = exc.partial
            if not raw:
                raise ScanEngineError(f"clamd at {self.where} closed without answering") from None
        except asyncio.LimitOverrunError:
            raise ScanEngineError(f"clamd at {self.where} sent an overlong answer") from None
        if len(raw) > _MAX_REPLY:
            raise ScanEngineError(f"clamd at {self.where} sent an overlong answer")
        return raw.rstrip(b"\0\n").decode("utf-8", "replace")


async def _close(writer: asyncio.StreamWriter) -> None:
    # Waited for, so a socket is closed before the caller's loop may end (no descriptor leaks).
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
