"""The open-proxy test of sender reputation: is the connecting host a proxy anyone may use?

Exchange's protocol analysis connects back to the sending host on common proxy ports and tries
to reach its own SMTP service through it; an open proxy relays spam for whoever finds it. This
module does the same, and nothing more:

- it connects only to the client's own address (never a name or a third party), on the
  configured ports: HTTP ``CONNECT`` on the HTTP ports, SOCKS5 without authentication on the
  SOCKS ports;
- the only destination it asks the proxy for is the address and port the client reached, i.e.
  this gateway; success means our own ``220`` banner came back through the proxy;
- the whole test is bounded by one time limit, every read by a byte limit, and each socket is
  closed before it returns. Any failure (refused, reset, timed out, garbage) means "not shown
  to be open", never an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import struct
from collections.abc import Sequence

_MAX_REPLY = 1024


async def probe(
    ip: str,
    target: tuple[str, int],
    *,
    http_ports: Sequence[int] = (),
    socks_ports: Sequence[int] = (),
    limit: float = 5.0,
) -> str:
    """How ``ip`` relayed to ``target`` (``"http CONNECT on port 3128"``), or ``""`` if it did not."""
    attempts = [("http", p) for p in http_ports] + [("socks5", p) for p in socks_ports]
    try:
        async with asyncio.timeout(limit):
            for kind, port in attempts:
                with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
                    if await _through(ip, port, kind, target):
                        return f"{kind} {'CONNECT ' if kind == 'http' else ''}on port {port}"
    except TimeoutError:
        pass
    return ""


async def _through(ip: str, port: int, kind: str, target: tuple[str, int]) -> bool:
    reader, writer = await asyncio.open_connection(ip, port)
    try:
        host, tport = target
        if kind == "http":
            shown = f"[{host}]" if ":" in host else host
            writer.write(f"CONNECT {shown}:{tport} HTTP/1.0\r\n\r\n".encode("ascii"))
            status = await reader.readline()
            if not status.startswith(b"HTTP/") or status.split(b" ")[1:2] != [b"200"]:
                return False
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                if len(line) > _MAX_REPLY:
                    return False
        else:
            writer.write(b"\x05\x01\x00")
            if await reader.readexactly(2) != b"\x05\x00":
                return False
            address = ipaddress.ip_address(host)
            atyp = b"\x01" if address.version == 4 else b"\x04"
            writer.write(b"\x05\x01\x00" + atyp + address.packed + struct.pack("!H", tport))
            head = await reader.readexactly(4)
            if head[:2] != b"\x05\x00" or head[3] not in (1, 4):
                return False
            await reader.readexactly((4 if head[3] == 1 else 16) + 2)
        banner = await reader.readline()
        writer.write(b"QUIT\r\n")
        return banner.startswith(b"220")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
