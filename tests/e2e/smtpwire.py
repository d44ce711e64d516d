"""A blocking SMTP client at the byte level, for tests that must misbehave on purpose.

smtplib cannot hold a connection idle from a chosen address, trickle a body a byte at a time
or send a BDAT chunk it has not finished; this can.
"""

from __future__ import annotations

import socket


class Wire:
    """One TCP connection to a test server, from ``source`` (any 127/8 address)."""

    def __init__(self, port: int, source: str = "127.0.0.2", timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self._buf = b""

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: str) -> str:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def reply(self) -> str:
        """One whole reply (all its lines), as text; "" when the server closed first."""
        lines: list[str] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return "\n".join(lines)
                self._buf += chunk
                continue
            line, self._buf = self._buf[:nl].rstrip(b"\r").decode(), self._buf[nl + 1 :]
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    def closed_by_server(self) -> bool:
        """True once the server has closed its side (after any bytes still to read)."""
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True

    def start_mail(self, rcpt: str = "b@example.test", size: int | None = None) -> None:
        """EHLO, MAIL and RCPT, each checked for a positive reply."""
        assert self.reply().startswith("220")
        assert self.command("EHLO client.remote.test").startswith("250")
        mail = "MAIL FROM:<a@remote.test>" + (f" SIZE={size}" if size is not None else "")
        assert self.command(mail).startswith("250")
        assert self.command(f"RCPT TO:<{rcpt}>").startswith("250")
