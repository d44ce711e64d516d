"""Hostile and ordinary test inputs built in memory: messages, executables, archives."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib
from email.message import EmailMessage

# The smallest header libmagic calls a PE program: "MZ", e_lfanew at 0x3c, "PE\0\0" there.
EXE = b"MZ\x90\x00" + b"\x00" * 56 + struct.pack("<I", 64) + b"PE\x00\x00" + b"\x4c\x01" + b"\x00" * 200


def message(*attachments: tuple[str, bytes, str], text: str = "Hello,\nsee attached.\n") -> bytes:
    """A multipart/mixed message (CRLF, as at end of data) with ``(name, content, type)`` parts."""
    msg = EmailMessage()
    msg["From"] = "alice@sender.test"
    msg["To"] = "bob@example.test"
    msg["Subject"] = "documents"
    msg["Message-ID"] = "<walk-test@sender.test>"
    msg.set_content(text)
    for name, content, ctype in attachments:
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def raw_message(head: str, body: str) -> bytes:
    """A message from literal header and body text (LF in the text becomes CRLF)."""
    text = "From: alice@sender.test\nTo: bob@example.test\nSubject: raw\n" + head + "\n" + body
    return text.replace("\n", "\r\n").encode("utf-8")


def zip_bytes(members: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, content in members.items():
            archive.writestr(zipfile.ZipInfo(name), content, compress_type=method)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def overlapping_zip(entries: int = 20, kernel_size: int = 4 * 1024 * 1024) -> bytes:
    """David Fifield's non-recursive bomb, reduced: every central entry points at one kernel.

    Each entry has its own name (as in the original) and the same local header offset, so the
    archive is small and its listed members, inflated one by one, are ``entries`` times the
    kernel.
    """
    plain = b"\x00" * kernel_size
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    kernel = deflater.compress(plain) + deflater.flush()
    crc = zlib.crc32(plain)
    local = struct.pack("<4sHHHHHLLLHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(kernel), kernel_size, 1, 0)
    local += b"0" + kernel
    central = b""
    for index in range(entries):
        name = str(index).encode()
        central += struct.pack(
            "<4sHHHHHHLLLHHHHHLL", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(kernel), kernel_size,
            len(name), 0, 0, 0, 0, 0, 0,
        ) + name  # fmt: skip
    end = struct.pack("<4sHHHHLLH", b"PK\x05\x06", 0, 0, entries, entries, len(central), len(local), 0)
    return local + central + end


def nested_zips(levels: int, inner: bytes = EXE, name: str = "payload.exe") -> bytes:
    data, current = inner, name
    for level in range(levels):
        data = zip_bytes({current: data})
        current = f"level{level}.zip"
    return data
