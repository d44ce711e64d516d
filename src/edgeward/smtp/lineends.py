"""Line-ending tests and repair shared by the body readers and delivery (RFC 5321 §2.3.8)."""

from __future__ import annotations

__all__ = ["has_bare_line_endings", "to_crlf"]


def has_bare_line_endings(data: bytes | bytearray) -> bool:
    crlf = data.count(b"\r\n")
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf


def to_crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
