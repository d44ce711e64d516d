"""The syslog channel: RFC 5424 messages over UDP (RFC 5426), TCP (RFC 6587) or a unix socket.

One notice is one message::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID name="value" ...] BOM MSG

PRI is facility * 8 + severity; TIMESTAMP is UTC with microseconds (RFC 5424 §6.2.3); MSGID is
the event kind; the structured data element carries the batch's count and the first event's
fields; MSG is the summary in UTF-8 behind a BOM (§6.4). Over TCP each message is framed by
octet counting (``LEN SP MSG``, RFC 6587 §3.4.1), which survives any byte in the message, on
one connection kept open and made again when it breaks. UDP and unix datagrams carry one
message each, cut to :data:`MAX_DATAGRAM` (RFC 5426 §3.2: receivers must take 480 octets and
should take 2048).

Security: SD-PARAM values escape ``"``, ``\\`` and ``]`` (§6.3.3); names are cut to the
characters §6.3.3 allows; every value is already one line (``events.clean``), so a sender's
text can neither end the structured data nor start a new syslog line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from dataclasses import dataclass

from edgeward.config.notify import FACILITIES, SyslogConfig
from edgeward.config.schema import split_hostport
from edgeward.notify.events import Severity
from edgeward.notify.limiter import Batch

__all__ = ["MAX_DATAGRAM", "SEVERITY_CODES", "SyslogChannel", "escape_param", "format_message"]

MAX_DATAGRAM = 2048
SEVERITY_CODES: dict[Severity, int] = {"critical": 2, "error": 3, "warning": 4, "notice": 5, "info": 6}
BOM = "\ufeff"
_PARAM_NAME_BAD = re.compile(r'[^\x21-\x7e]|[= \]"]')


def escape_param(value: str) -> str:
    """An SD-PARAM value (RFC 5424 §6.3.3): ``"``, ``\\`` and ``]`` escaped with a backslash."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _param_name(name: str) -> str:
    return _PARAM_NAME_BAD.sub("_", name)[:32] or "_"


def _header_field(value: str, limit: int) -> str:
    """A header field (HOSTNAME, APP-NAME, ...): printable ASCII without spaces, or the NILVALUE."""
    cleaned = "".join(c for c in value if "\x21" <= c <= "\x7e")[:limit]
    return cleaned or "-"


def _element(sd_id: str, params: dict[str, str]) -> str:
    """One SD-ELEMENT (RFC 5424 §6.3.1)."""
    return f"[{sd_id}" + "".join(f' {_param_name(k)}="{escape_param(v)}"' for k, v in params.items()) + "]"


def format_message(
    batch: Batch, *, facility: int, hostname: str, app_name: str, sd_id: str,
    procid: int | None = None, limit: int | None = None,
) -> bytes:  # fmt: skip
    """One RFC 5424 message for ``batch``; ``limit`` cuts it to that many octets (datagrams)."""
    event = batch.first
    pri = facility * 8 + SEVERITY_CODES[event.severity]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(event.at)) + f".{int(event.at % 1 * 1e6):06d}Z"
    head = " ".join((
        f"<{pri}>1", stamp, _header_field(hostname, 255), _header_field(app_name, 48),
        _header_field(str(procid if procid is not None else os.getpid()), 128),
        _header_field(event.kind, 32),
    ))  # fmt: skip
    params = {"count": str(batch.count), "severity": event.severity, **event.fields}
    sd = _element(sd_id, params)
    summary = event.summary + (f" (and {batch.count - 1} more)" if batch.count > 1 else "")
    data = f"{head} {sd} {BOM}{summary}".encode()
    if limit is not None and len(data) > limit:
        # Cut the MSG, never the structured data: a receiver must still parse the frame. A
        # structured part too long on its own loses its longest values first.
        while len(f"{head} {sd} ".encode()) + 16 > limit and len(params) > 1:
            longest = max((k for k in params if k != "count"), key=lambda k: len(params[k]))
            params[longest] = params[longest][: max(0, len(params[longest]) // 2 - 3)] + "..."
            if len(params[longest]) <= 3:
                del params[longest]
            sd = _element(sd_id, params)
        data = f"{head} {sd} {BOM}{summary}".encode()
        data = data[:limit].decode("utf-8", "ignore").encode()
    return data


@dataclass
class _Tcp:
    writer: asyncio.StreamWriter | None = None


class SyslogChannel:
    """Sends each notice to one syslog receiver; raises ``OSError`` when it cannot."""

    name = "syslog"

    def __init__(self, cfg: SyslogConfig, hostname: str) -> None:
        self.cfg = cfg
        self.hostname = hostname
        self.facility = FACILITIES[cfg.facility]
        self._tcp = _Tcp()
        self._lock = asyncio.Lock()

    def _format(self, batch: Batch, limit: int | None) -> bytes:
        return format_message(
            batch, facility=self.facility, hostname=self.hostname, app_name=self.cfg.app_name,
            sd_id=self.cfg.sd_id, limit=limit,
        )  # fmt: skip

    async def send(self, batch: Batch) -> str:
        async with self._lock, asyncio.timeout(self.cfg.timeout):
            if self.cfg.transport == "tcp":
                return await self._send_tcp(self._format(batch, None))
            data = self._format(batch, MAX_DATAGRAM)
            if self.cfg.transport == "udp":
                host, port = split_hostport(self.cfg.address, 514)
                await asyncio.to_thread(_send_udp, host, port, data)
                return f"udp {host}:{port}"
            await asyncio.to_thread(_send_unix, self.cfg.address, data)
            return f"unix {self.cfg.address}"

    async def _send_tcp(self, data: bytes) -> str:
        host, port = split_hostport(self.cfg.address, 514)
        frame = str(len(data)).encode() + b" " + data
        for attempt in (1, 2):
            if self._tcp.writer is None or self._tcp.writer.is_closing():
                _, self._tcp.writer = await asyncio.open_connection(host, port)
            try:
                self._tcp.writer.write(frame)
                await self._tcp.writer.drain()
                return f"tcp {host}:{port}"
            except OSError:
                # A receiver that restarted leaves a dead connection; one fresh attempt, no more.
                await self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        writer, self._tcp.writer = self._tcp.writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _send_udp(host: str, port: int, data: bytes) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.sendto(data, (host, port))


def _send_unix(path: str, data: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(path)
        s.send(data)
