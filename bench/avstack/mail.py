"""The benchmark's message mix, built the same way on every run, and the SMTP load that sends it.

One cycle of :data:`MIX` messages, repeated: plain text mails, a mail with a 1 MB zip (text and
binary members, as an archive of documents and images would be), a mail with an Office file
that carries a VBA macro (oletools' own ``sample_with_vba.ppt`` from the shared corpus), and
EICAR three ways (attached, zipped, and in a zip inside a zip). All content comes from a seeded
generator, so both stacks, and every run, see the same bytes. Each message says what it is in
its Subject (``avbench <kind> <seq>``), which the checks read back from the sink.

The load keeps ``sessions`` SMTP connections open and sends each its share of messages in turn,
one transaction after another (as an MTA in front of either stack would). A clean message must
get ``250``, an EICAR message a permanent refusal; anything else fails the run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import io
import random
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from relay.procs import BenchError

from edgeward.testing.clamav import EICAR

OLETOOLS = Path("attachments") / "oletools-test-data.tar.gz"
OFFICE_SAMPLE = "oletools-test-data/tests/test-data/olevba/sample_with_vba.ppt"
SENDER = "sender@client.bench.test"
RECIPIENT = "user@bench.test"
HELO = "client.bench.test"
REPLY_TIMEOUT = 120.0
ZIP_TARGET = 1024 * 1024
PPT = "application/vnd.ms-powerpoint"

# One cycle of the mix: 10 messages, 3 of them infected.
MIX = ("plain", "zip", "plain", "office", "eicar", "plain", "zip-eicar", "office", "plain", "zip2-eicar")
INFECTED = frozenset({"eicar", "zip-eicar", "zip2-eicar"})


@dataclass
class Message:
    kind: str
    body: bytes  # headers after Subject, and the body; Subject and Message-ID are per send

    @property
    def infected(self) -> bool:
        return self.kind in INFECTED


@dataclass
class LoadResult:
    latencies: list[float]
    elapsed: float
    delivered: list[int] = field(default_factory=list)  # seq of messages that got 250
    refused: dict[int, str] = field(default_factory=dict)  # seq -> the refusal


def _words(rng: random.Random, n: int) -> str:
    vocab = [
        "the",
        "of",
        "mail",
        "gateway",
        "quarterly",
        "report",
        "invoice",
        "attached",
        "please",
        "find",
        "review",
        "meeting",
    ]
    vocab += [f"item{k}" for k in range(200)]
    lines, line = [], []
    for _ in range(n):
        line.append(rng.choice(vocab))
        if len(line) == 12:
            lines.append(" ".join(line))
            line = []
    return "\r\n".join(lines) + "\r\n"


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return buf.getvalue()


def big_zip(rng: random.Random) -> bytes:
    """About 1 MB of zip: compressible text members and incompressible "image" members."""
    members = [(f"docs/report-{k}.txt", _words(rng, 40_000).encode()) for k in range(3)]
    members += [(f"images/photo-{k}.jpg", rng.randbytes(200_000)) for k in range(3)]
    data = _zip(members)
    # Top up with one more binary member to land close to the target size.
    short = ZIP_TARGET - len(data)
    if short > 0:
        data = _zip([*members, ("images/extra.jpg", rng.randbytes(short))])
    return data


def default_corpora() -> Path:
    """``shared/corpora`` next to the repository, or next to a folder above it (a work tree)."""
    repo = Path(__file__).resolve().parents[2]
    for up in repo.parents:
        if (up / "shared" / "corpora").is_dir():
            return up / "shared" / "corpora"
    return repo.parent / "shared" / "corpora"


def office_sample(corpora: Path) -> bytes:
    tarball = corpora / OLETOOLS
    if not tarball.exists():
        raise BenchError(f"the shared corpus is missing: {tarball} (see --corpora)")
    with tarfile.open(tarball) as tar:  # read in memory, never unpacked to disk
        handle = tar.extractfile(OFFICE_SAMPLE)
        if handle is None:
            raise BenchError(f"{OFFICE_SAMPLE} not in {tarball}")
        return handle.read()


def _b64(data: bytes) -> str:
    text = base64.b64encode(data).decode()
    return "\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))


def _with_attachment(text: str, name: str, ctype: str, data: bytes) -> bytes:
    boundary = "=_avbench_boundary_0"
    return (
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{text}\r\n"
        f'--{boundary}\r\nContent-Type: {ctype}; name="{name}"\r\n'
        f'Content-Disposition: attachment; filename="{name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        f"{_b64(data)}\r\n--{boundary}--\r\n"
    ).encode()


def build_mix(corpora: Path, seed: int = 10) -> dict[str, Message]:
    """One message of each kind, from a fixed seed."""
    rng = random.Random(seed)
    note = _words(rng, 120)
    plain = (
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + _words(rng, 600)
    ).encode()
    return {
        "plain": Message("plain", plain),
        "zip": Message("zip", _with_attachment(note, "archive.zip", "application/zip", big_zip(rng))),
        "office": Message(
            "office",
            _with_attachment(note, "slides.ppt", "application/vnd.ms-powerpoint", office_sample(corpora)),
        ),
        "eicar": Message("eicar", _with_attachment(note, "eicar.com", "application/octet-stream", EICAR)),
        "zip-eicar": Message(
            "zip-eicar", _with_attachment(note, "eicar.zip", "application/zip", _zip([("eicar.com", EICAR)]))
        ),
        "zip2-eicar": Message(
            "zip2-eicar",
            _with_attachment(
                note, "eicar2.zip", "application/zip", _zip([("inner.zip", _zip([("eicar.com", EICAR)]))])
            ),
        ),
    }


def kind_of(seq: int) -> str:
    return MIX[seq % len(MIX)]


class _Smtp:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self) -> str:
        lines: list[str] = []
        async with asyncio.timeout(REPLY_TIMEOUT):
            while True:
                line = await self.reader.readline()
                if not line:
                    raise BenchError(f"connection closed while waiting for a reply (after {lines!r})")
                lines.append(line.decode("ascii", "replace").rstrip())
                if len(line) < 4 or line[3:4] != b"-":
                    return " / ".join(lines)

    async def command(self, text: bytes, expect: str) -> str:
        self.writer.write(text)
        answer = await self.reply()
        if not answer.startswith(expect):
            raise BenchError(f"{text.decode().strip()}: expected {expect}, got {answer!r}")
        return answer

    async def send(self, seq: int, msg: Message) -> tuple[float, str]:
        head = (
            f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nDate: {email.utils.formatdate()}\r\n"
            f"Message-ID: <{seq}.{time.time_ns()}@{HELO}>\r\nSubject: avbench {msg.kind} {seq}\r\n"
        ).encode()
        start = time.perf_counter()
        await self.command(f"MAIL FROM:<{SENDER}>\r\n".encode(), "250")
        await self.command(f"RCPT TO:<{RECIPIENT}>\r\n".encode(), "250")
        await self.command(b"DATA\r\n", "354")
        self.writer.write(head + msg.body + b".\r\n")
        answer = await self.reply()
        return time.perf_counter() - start, answer


async def _session(port: int) -> _Smtp:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    smtp = _Smtp(reader, writer)
    await smtp.command(b"", "220")
    await smtp.command(f"EHLO {HELO}\r\n".encode(), "250")
    return smtp


# Messages per connection: sessions draw from one list, so a fast one may take far more than
# its share, and 1,000 commands (Edgeward's max_commands) is about 250 messages.
PER_CONNECTION = 100


async def _load(port: int, sessions: int, seqs: range, mix: dict[str, Message]) -> LoadResult:
    result = LoadResult([], 0.0)
    todo = iter(seqs)

    async def worker() -> None:
        smtp = await _session(port)
        sent = 0
        try:
            for seq in todo:
                if sent == PER_CONNECTION:  # a fresh connection, as a relay's command limit asks
                    await smtp.command(b"QUIT\r\n", "221")
                    smtp.writer.close()
                    smtp, sent = await _session(port), 0
                sent += 1
                msg = mix[kind_of(seq)]
                took, answer = await smtp.send(seq, msg)
                result.latencies.append(took)
                if answer.startswith("250") and not msg.infected:
                    result.delivered.append(seq)
                elif answer.startswith("5") and msg.infected:
                    result.refused[seq] = answer
                else:
                    raise BenchError(f"message {seq} ({msg.kind}) got {answer!r}")
            await smtp.command(b"QUIT\r\n", "221")
        finally:
            smtp.writer.close()
            with contextlib.suppress(OSError):
                await smtp.writer.wait_closed()

    start = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        for _ in range(sessions):
            tg.create_task(worker())
    result.elapsed = time.monotonic() - start
    return result


def run_load(port: int, sessions: int, seqs: range, mix: dict[str, Message], timeout: float) -> LoadResult:
    """Send the messages ``seqs`` over ``sessions`` connections; raise on any unexpected reply."""

    async def bounded() -> LoadResult:
        async with asyncio.timeout(timeout):
            return await _load(port, sessions, seqs, mix)

    try:
        return asyncio.run(bounded())
    except TimeoutError as exc:
        raise BenchError(f"the load did not finish within {timeout:.0f}s") from exc
    except ExceptionGroup as group:
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise BenchError(f"load failed: {type(first).__name__}: {first}") from first
