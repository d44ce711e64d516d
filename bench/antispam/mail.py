"""The benchmark's mail: DKIM-signed 2 KB messages and the load generator that sends them.

Messages are signed once per body variant, not once per message, so signing costs the client
nothing during a pass: the signature covers From, To, Subject and Date (and the body), and the
per-message Message-ID is left unsigned, which DKIM allows and verifiers do not mind. Bodies are
plain business prose (the content filter rates real text, not filler), 2048 bytes each.

Each session sends from its own client address in ``CLIENT_NET`` (bound with ``local_addr``)
over a new connection per message, as an edge gateway mostly sees it, and times the whole
transaction: from connect until the 250 after the final ".". The banner, EHLO, and so every
connection-stage check (postscreen, DNSBL) fall inside that time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import itertools
import time
from dataclasses import dataclass, field

import dkim
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import rsa
from relay.procs import BenchError

from antispam.dns import SELECTOR, SENDER_DOMAIN

RECIPIENT = "user@bench.test"
SENDER = f"news@{SENDER_DOMAIN}"
BODY_SIZE = 2048
REPLY_TIMEOUT = 120.0

_PROSE = (
    "Thanks for joining the planning call on Tuesday.",
    "The revised schedule for the warehouse move is attached to the project page.",
    "Please check the delivery dates for your team and tell me by Friday if any of them clash.",
    "We agreed to keep the old racks until the new shelving has been inspected.",
    "Facilities will send the parking permits for the new site next week.",
    "The budget review moved to the second Thursday of the month, same room as before.",
    "If you need a copy of the floor plan in a larger format, ask the front desk.",
    "Minutes of the last meeting are on the wiki under operations and logistics.",
    "Our supplier confirmed the order of packing material for the first two weeks.",
    "The training session for the scanners is planned for the morning of the move.",
    "Remember to label every box with the room number and your department.",
    "I will be out of the office on Monday; Maria covers the questions about transport.",
)


def rsa_key() -> tuple[bytes, str]:
    """A new 2048-bit RSA key: (PEM private key for dkimpy, the DKIM TXT record's text)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption())
    der = key.public_key().public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def body_text(variant: int, size: int = BODY_SIZE) -> bytes:
    """``size`` bytes of prose in CRLF lines, a different sentence order for each variant."""
    lines: list[bytes] = []
    total = 0
    for n in itertools.count():
        line = _PROSE[(variant * 5 + n * 7) % len(_PROSE)].encode() + b"\r\n"
        if total + len(line) > size:
            break
        lines.append(line)
        total += len(line)
    pad = size - total
    if pad >= 2:
        lines.append(b"-" * (pad - 2) + b"\r\n")
    return b"".join(lines)


@dataclass(frozen=True)
class Variant:
    """A signed message without its Message-ID: the signature header and the signed part."""

    signed: bytes


def make_variants(
    key_pem: bytes, count: int, author: str = SENDER, domain: str = SENDER_DOMAIN
) -> list[Variant]:
    out = []
    for v in range(count):
        head = (
            f"From: Operations <{author}>\r\nTo: <{RECIPIENT}>\r\nSubject: Warehouse move, note {v}\r\n"
            f"Date: {email.utils.formatdate(localtime=False)}\r\n"
        ).encode()
        msg = head + b"\r\n" + body_text(v)
        sig = dkim.sign(
            msg, SELECTOR.encode(), domain.encode(), key_pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[b"from", b"to", b"subject", b"date"],
        )  # fmt: skip
        out.append(Variant(sig + msg))
    return out


def with_message_id(variant: Variant, seq: int) -> bytes:
    """The variant with a unique Message-ID field prepended (not covered by the signature)."""
    return f"Message-ID: <{seq}.{time.time_ns()}@client.{SENDER_DOMAIN}>\r\n".encode() + variant.signed


class SmtpClient:
    """A minimal SMTP client over asyncio streams; every command waits for its reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, source: str) -> SmtpClient:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(source, 0), limit=1 << 20
        )
        return cls(reader, writer)

    async def reply(self) -> tuple[int, str]:
        lines: list[str] = []
        async with asyncio.timeout(REPLY_TIMEOUT):
            while True:
                line = await self.reader.readline()
                if not line:
                    raise BenchError(f"connection closed while waiting for a reply (after {lines!r})")
                lines.append(line.decode("ascii", "replace").rstrip())
                if len(line) < 4 or line[3:4] != b"-":
                    break
        code = int(lines[-1][:3]) if lines[-1][:3].isdigit() else 0
        return code, " / ".join(lines)

    async def command(self, text: str) -> tuple[int, str]:
        self.writer.write(text.encode() + b"\r\n")
        return await self.reply()

    async def send_data(self, message: bytes) -> tuple[int, str]:
        # Dot-stuffing: no line of ours starts with "." except the probes', which say so.
        self.writer.write(message.replace(b"\r\n.", b"\r\n.."))
        self.writer.write(b".\r\n")
        return await self.reply()

    async def close(self) -> None:
        with contextlib.suppress(OSError, BenchError, TimeoutError):
            await self.command("QUIT")
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def transaction(
    port: int, source: str, sender: str, message: bytes, helo: str = f"client.{SENDER_DOMAIN}"
) -> tuple[int, str]:
    """One whole SMTP transaction on a new connection; the first refusal's (code, text) or the 250."""
    smtp = await SmtpClient.connect(port, source)
    try:
        steps = (None, f"EHLO {helo}", f"MAIL FROM:<{sender}>", f"RCPT TO:<{RECIPIENT}>", "DATA")
        for step in steps:
            code, text = await (smtp.reply() if step is None else smtp.command(step))
            if code >= 400 or code == 0:
                return code, text
        return await smtp.send_data(message)
    finally:
        await smtp.close()


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    refused: list[str] = field(default_factory=list)


async def _load(
    port: int, sources: list[str], messages: int, variants: list[Variant], first_seq: int
) -> LoadResult:
    result = LoadResult()
    next_seq = iter(range(first_seq, first_seq + messages))

    async def worker(source: str) -> None:
        for seq in next_seq:
            message = with_message_id(variants[seq % len(variants)], seq)
            start = time.perf_counter()
            code, text = await transaction(port, source, SENDER, message)
            if code != 250:
                result.refused.append(f"message {seq} from {source}: {text}")
                continue
            result.latencies.append(time.perf_counter() - start)

    start = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        for source in sources:
            tg.create_task(worker(source))
    result.elapsed = time.monotonic() - start
    return result


def run_load(
    port: int, sources: list[str], messages: int, variants: list[Variant], first_seq: int, timeout: float
) -> LoadResult:
    """``messages`` messages over ``len(sources)`` parallel sessions; raise on any failure."""

    async def bounded() -> LoadResult:
        async with asyncio.timeout(timeout):
            return await _load(port, sources, messages, variants, first_seq)

    try:
        result = asyncio.run(bounded())
    except TimeoutError as exc:
        raise BenchError(f"the load did not finish within {timeout:.0f}s") from exc
    except ExceptionGroup as group:
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise BenchError(f"load failed: {type(first).__name__}: {first}") from first
    if result.refused:
        raise BenchError(f"{len(result.refused)} message(s) refused, first: {result.refused[0]}")
    return result
