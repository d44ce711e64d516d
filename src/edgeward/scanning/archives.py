"""Archives unpacked in memory, within bounds: zip, tar, gzip, bzip2, xz and 7z.

``Unpacker.unpack`` lists one archive's members with their content; the walk (``scanning.walk``)
recurses into members that are archives themselves, up to ``ArchiveLimits.max_depth``. One
``Unpacker`` serves a whole message, so its bounds (members, expanded bytes) are the message's,
not each archive's: forty-two nested zips share one budget.

Bombs are refused before any inflating where the format says enough: a zip's central
directory gives every member's local header offset and compressed size, and members whose
extents overlap (David Fifield's non-recursive bomb, where every entry points into one shared
kernel) are refused without decompressing a byte; declared sizes over the budget and declared
ratios over ``max_ratio`` are refused too. Formats that declare nothing (gzip, bzip2, xz) or
lie are inflated in bounded steps and stopped when a bound is crossed. Each refusal is
``ARCHIVE_BOMB`` (the walk is then cut: something was not scanned).

Encrypted content (zip's encryption flag, a 7z that needs a password, an Office document
whose OLE container holds ``EncryptionInfo`` and ``EncryptedPackage``) is ``ARCHIVE_ENCRYPTED``:
the members' names are still listed, so the attachment filter can judge them. Unreadable
archives are ``ARCHIVE_CORRUPT``.

Security: member names never become paths (py7zr is given a writer factory and a name list
that excludes names it would refuse, tarfile and zipfile are only read through file objects);
nothing here touches the file system. Every loop is bounded by member count or bytes.
"""

from __future__ import annotations

import bz2
import io
import itertools
import lzma
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import py7zr
import py7zr.exceptions
import py7zr.io

from edgeward.scanning import names as names_

__all__ = ["ArchiveLimits", "Listing", "Member", "Unpacker", "archive_kind", "is_encrypted_office"]

CHUNK = 64 * 1024
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTION_INFO = "EncryptionInfo".encode("utf-16-le")
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Bounds on unpacking for one message."""

    max_depth: int = 5
    max_members: int = 1000
    max_expanded_bytes: int = 128 * 1024 * 1024
    max_ratio: int = 100
    ratio_floor: int = 1024 * 1024  # ratios are only held against members larger than this


@dataclass(frozen=True, slots=True)
class Member:
    name: str  # as the archive names it (unescaped; never used as a path)
    data: bytes
    encrypted: bool = False


@dataclass
class Listing:
    members: list[Member] = field(default_factory=list)
    findings: list[tuple[str, str, bool]] = field(default_factory=list)  # (name, detail, cut)

    def bomb(self, path: str, why: str) -> None:
        self.findings.append(("ARCHIVE_BOMB", f"{path}: {why}", True))


def archive_kind(data: bytes) -> str | None:
    """The archive format ``data`` is in, by its leading bytes; None when it is none of ours."""
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if data[:3] == b"BZh":
        return "bzip2"
    if data[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if data[:6] == b"7z\xbc\xaf\x27\x1c":
        return "7z"
    if data[257:262] == b"ustar":
        return "tar"
    return None


def is_encrypted_office(data: bytes) -> bool:
    """An OLE container with the streams of an encrypted OOXML document (MS-OFFCRYPTO §2.3.4)."""
    return data[:8] == _OLE_MAGIC and _ENCRYPTION_INFO in data and _ENCRYPTED_PACKAGE in data


# What the stdlib and py7zr raise on a malformed archive (and Deflate64 or another method they
# do not implement): the archive is unreadable, not the walk broken.
_UNREADABLE = (
    zipfile.BadZipFile, tarfile.TarError, py7zr.exceptions.ArchiveError, zlib.error, lzma.LZMAError, OSError,
    EOFError, ValueError, KeyError, NotImplementedError, struct.error,
)  # fmt: skip


class _Overflow(Exception):
    """A bound was crossed while inflating."""


class _CappedWriter(py7zr.io.Py7zIO):
    """A py7zr output that keeps bytes in memory and stops the extraction past the budget."""

    def __init__(self, room: Callable[[], int], spend: Callable[[int], None]) -> None:
        self._buffer = io.BytesIO()
        self._room = room
        self._spend = spend

    def write(self, s: bytes | bytearray) -> int:
        if len(s) > self._room():
            raise _Overflow("expanded bytes")
        self._spend(len(s))
        return self._buffer.write(s)

    def read(self, size: int | None = None) -> bytes:
        return self._buffer.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._buffer.seek(offset, whence)

    def flush(self) -> None:
        pass

    def size(self) -> int:
        return len(self._buffer.getbuffer())

    def value(self) -> bytes:
        return self._buffer.getvalue()


class _Factory(py7zr.io.WriterFactory):
    def __init__(self, unpacker: Unpacker) -> None:
        self.unpacker = unpacker
        self.products: dict[str, _CappedWriter] = {}

    def create(self, filename: str) -> py7zr.io.Py7zIO:
        product = _CappedWriter(self.unpacker.room, self.unpacker.spend)
        self.products[filename] = product
        return product


class Unpacker:
    """Unpacks the archives of one message within one shared budget."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.members = 0
        self.expanded = 0

    def room(self) -> int:
        return self.limits.max_expanded_bytes - self.expanded

    def spend(self, count: int) -> None:
        self.expanded += count

    def unpack(self, data: bytes, kind: str, path: str) -> Listing:
        listing = Listing()
        handlers: dict[str, Callable[[bytes, str, Listing], None]] = {
            "zip": self._zip, "tar": self._tar, "7z": self._7z,
            "gzip": self._stream, "bzip2": self._stream, "xz": self._stream,
        }  # fmt: skip
        try:
            handlers[kind](data, path, listing)
        except _Overflow as exc:
            listing.bomb(path, f"expands past the bound on {exc}")
        except _UNREADABLE as exc:
            listing.findings.append(("ARCHIVE_CORRUPT", f"{path}: {kind}: {type(exc).__name__}", False))
        return listing

    def _count(self, listing: Listing, path: str, extra: int = 1) -> bool:
        """Take ``extra`` members from the budget; False (and a finding) when it is spent."""
        if self.members + extra > self.limits.max_members:
            listing.bomb(path, f"more than {self.limits.max_members} archive members")
            return False
        self.members += extra
        return True

    def _check_declared(self, listing: Listing, path: str, size: int, packed: int) -> bool:
        if size > self.room():
            listing.bomb(path, f"declares {size} bytes, over the bound on expanded bytes")
            return False
        if size > self.limits.ratio_floor and size > self.limits.max_ratio * max(packed, 1):
            listing.bomb(path, f"declares a ratio of {size // max(packed, 1)}:1")
            return False
        return True

    def _read(self, stream: Any, declared: int, packed: int, path: str, listing: Listing) -> bytes | None:
        """A member's bytes, read in chunks; None when a bound stopped it."""
        out = bytearray()
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                return bytes(out)
            out += chunk
            if len(out) > declared:
                listing.bomb(path, "member larger than its declared size")
                return None
            if len(out) > self.room():
                raise _Overflow("expanded bytes")
            if len(out) > self.limits.ratio_floor and len(out) > self.limits.max_ratio * max(packed, 1):
                listing.bomb(path, f"inflates past a ratio of {self.limits.max_ratio}:1")
                return None

    # -- formats ------------------------------------------------------------------------------

    def _zip(self, data: bytes, path: str, listing: Listing) -> None:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if not self._count(listing, path, len(infos)):
                return
            if overlap := _zip_overlap(data, infos):
                listing.bomb(path, overlap)
                return
            if not self._check_declared(listing, path, sum(i.file_size for i in infos),
                                        sum(i.compress_size for i in infos)):  # fmt: skip
                return
            for info in infos:
                if info.is_dir():
                    continue
                if info.flag_bits & 0x1:
                    listing.findings.append(("ARCHIVE_ENCRYPTED", f"{path}: encrypted zip member", False))
                    listing.members.append(Member(info.filename, b"", encrypted=True))
                    continue
                with archive.open(info) as stream:
                    content = self._read(stream, info.file_size, info.compress_size, path, listing)
                if content is None:
                    return
                self.spend(len(content))
                listing.members.append(Member(info.filename, content))

    def _tar(self, data: bytes, path: str, listing: Listing) -> None:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            while (info := archive.next()) is not None:
                # Every header counts, files or not: a stream of directory entries is work too.
                if not self._count(listing, path):
                    return
                if not info.isfile():
                    continue
                if not self._check_declared(listing, path, info.size, info.size):
                    return
                stream = archive.extractfile(info)
                content = b"" if stream is None else self._read(stream, info.size, info.size, path, listing)
                if content is None:
                    return
                self.spend(len(content))
                listing.members.append(Member(info.name, content))

    def _stream(self, data: bytes, path: str, listing: Listing) -> None:
        """gzip, bzip2 or xz: one compressed stream, inflated in bounded steps."""
        if not self._count(listing, path):
            return
        out = bytearray()
        decompress, finished = _decompressor(data)
        while True:
            chunk, more = decompress()
            out += chunk
            if len(out) > self.room():
                raise _Overflow("expanded bytes")
            if len(out) > self.limits.ratio_floor and len(out) > self.limits.max_ratio * len(data):
                listing.bomb(path, f"inflates past a ratio of {self.limits.max_ratio}:1")
                return
            if not more:
                break
        if not finished():
            listing.findings.append(("ARCHIVE_CORRUPT", f"{path}: compressed stream is truncated", False))
        self.spend(len(out))
        listing.members.append(Member(_stream_name(data, path), bytes(out)))

    def _7z(self, data: bytes, path: str, listing: Listing) -> None:
        try:
            archive = py7zr.SevenZipFile(io.BytesIO(data), mode="r", max_extract_size=max(self.room(), 1))
        except py7zr.exceptions.PasswordRequired:
            listing.findings.append(("ARCHIVE_ENCRYPTED", f"{path}: 7z with encrypted names", False))
            return
        with archive:
            files = [f for f in archive.list() if not f.is_directory]
            if not self._count(listing, path, len(files)):
                return
            if not self._check_declared(listing, path, sum(f.uncompressed for f in files), len(data)):
                return
            if archive.needs_password():
                listing.findings.append(("ARCHIVE_ENCRYPTED", f"{path}: encrypted 7z", False))
                listing.members += [Member(f.filename, b"", encrypted=True) for f in files]
                return
            safe = [f.filename for f in files if not names_.hostile(f.filename)]
            listing.members += [Member(f.filename, b"") for f in files if names_.hostile(f.filename)]
            factory = _Factory(self)
            if safe:
                archive.extract(targets=safe, factory=factory)
            listing.members += [Member(name, w.value()) for name, w in factory.products.items()]


def _zip_overlap(data: bytes, infos: list[zipfile.ZipInfo]) -> str:
    """Why the members' local extents are impossible (overlap, outside the data), or ``""``."""
    extents: list[tuple[int, int]] = []
    for info in infos:
        start = info.header_offset
        header = data[start : start + 30]
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            return "a member's local header is missing"
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        end = start + 30 + name_len + extra_len + info.compress_size
        if end > len(data):
            return "a member extends past the end of the archive"
        extents.append((start, end))
    extents.sort()
    for (_, previous_end), (start, _) in itertools.pairwise(extents):
        if start < previous_end:
            return "members overlap (a non-recursive zip bomb)"
    return ""


def _decompressor(data: bytes) -> tuple[Callable[[], tuple[bytes, bool]], Callable[[], bool]]:
    """A step (the next output, at most CHUNK bytes, and whether more may come) and whether the
    stream reached its end marker."""
    if data[:2] == b"\x1f\x8b":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        tail = [data]

        def gzip_step() -> tuple[bytes, bool]:
            chunk = inflater.decompress(tail[0], CHUNK)
            tail[0] = inflater.unconsumed_tail
            return chunk, not inflater.eof and bool(tail[0] or chunk)

        return gzip_step, lambda: inflater.eof
    other: bz2.BZ2Decompressor | lzma.LZMADecompressor
    other = bz2.BZ2Decompressor() if data[:3] == b"BZh" else lzma.LZMADecompressor()
    first = [True]

    def step() -> tuple[bytes, bool]:
        chunk = other.decompress(data if first[0] else b"", CHUNK)
        first[0] = False
        return chunk, not other.eof and not (other.needs_input and not chunk)

    return step, lambda: other.eof


def _stream_name(data: bytes, path: str) -> str:
    """The gzip header's original name, else the archive's name without its suffix."""
    if data[:2] == b"\x1f\x8b" and len(data) > 10 and data[3] & 0x08:
        start = 10
        if data[3] & 0x04:
            start += 2 + int.from_bytes(data[10:12], "little")
        end = data.find(b"\x00", start, start + 1024)
        if end > start:
            return data[start:end].decode("latin-1")
    last = path.rsplit("!", 1)[-1].rsplit("/", 1)[-1]
    for suffix, replacement in ((".tgz", ".tar"), (".gz", ""), (".bz2", ""), (".xz", "")):
        if last.lower().endswith(suffix):
            return last[: -len(suffix)] + replacement
    return last + ".out" if last else "content"
