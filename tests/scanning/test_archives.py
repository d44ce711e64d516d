"""Archives in the walk: formats, nesting, bombs, encryption and hostile member names."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import shutil
import subprocess
from pathlib import Path

import py7zr
import pytest

from edgeward.scanning.archives import ArchiveLimits, Unpacker, archive_kind
from edgeward.scanning.walk import WalkLimits, walk_message
from tests.scanning.builders import EXE, message, nested_zips, overlapping_zip, tar_bytes, zip_bytes


def attach(name: str, content: bytes, limits: WalkLimits | None = None) -> tuple[dict[str, bytes], set[str]]:
    """Walk a message carrying ``content`` as ``name``: items by path, finding names."""
    walk = walk_message(message((name, content, "application/octet-stream")), limits)
    return {i.path: i.data for i in walk.items}, {n for n, _ in walk.findings}


def seven_zip(members: dict[str, bytes], password: str | None = None, *, encrypt_names: bool = False
              ) -> bytes:  # fmt: skip
    buffer = io.BytesIO()
    with py7zr.SevenZipFile(buffer, "w", password=password) as archive:
        if encrypt_names:
            archive.set_encrypted_header(True)
        for name, content in members.items():
            archive.writestr(content, name)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("a.zip", lambda: zip_bytes({"dir/x.exe": EXE})),
        ("a.tar", lambda: tar_bytes({"dir/x.exe": EXE})),
        ("x.exe.gz", lambda: gzip.compress(EXE)),
        ("x.exe.bz2", lambda: bz2.compress(EXE)),
        ("x.exe.xz", lambda: lzma.compress(EXE)),
        ("a.7z", lambda: seven_zip({"dir/x.exe": EXE})),
        ("a.tgz", lambda: gzip.compress(tar_bytes({"dir/x.exe": EXE}))),
    ],
)
def test_every_format_is_unpacked_in_memory(name: str, build: object) -> None:
    assert callable(build)
    items, findings = attach(name, build())
    assert any(path.startswith(f"2/{name}!") and data == EXE for path, data in items.items()), items.keys()
    assert not findings & {"ARCHIVE_CORRUPT", "ARCHIVE_BOMB"}


def test_gzip_member_takes_its_name_from_the_header_or_the_archive() -> None:
    buffer = io.BytesIO()
    with gzip.GzipFile("setup.exe", "wb", fileobj=buffer) as stream:
        stream.write(EXE)
    items, _ = attach("innocent.gz", buffer.getvalue())
    assert "2/innocent.gz!setup.exe" in items
    items, _ = attach("tool.exe.gz", gzip.compress(EXE))
    assert "2/tool.exe.gz!tool.exe" in items


def test_an_overlapping_zip_bomb_is_refused_before_inflating() -> None:
    bomb = overlapping_zip(entries=40, kernel_size=4 * 1024 * 1024)  # 160 MB from ~8 KB
    assert len(bomb) < 64 * 1024
    unpacker = Unpacker(ArchiveLimits(max_expanded_bytes=1024 * 1024 * 1024, max_ratio=10**9))
    listing = unpacker.unpack(bomb, "zip", "2/bomb.zip")
    assert listing.members == [] and unpacker.expanded == 0
    assert [f[0] for f in listing.findings] == ["ARCHIVE_BOMB"] and "overlap" in listing.findings[0][1]
    walk = walk_message(message(("bomb.zip", bomb, "application/zip")))
    assert walk.cut and "ARCHIVE_BOMB" in {n for n, _ in walk.findings}


def test_declared_ratio_and_size_bombs_are_refused() -> None:
    zeros = zip_bytes({"zeros.bin": b"\x00" * (8 * 1024 * 1024)})
    _, findings = attach("z.zip", zeros)  # about 1000:1
    assert "ARCHIVE_BOMB" in findings
    small = WalkLimits(archive=ArchiveLimits(max_expanded_bytes=1024 * 1024))
    _, findings = attach("z.zip", zip_bytes({"r.bin": bytes(range(256)) * 8192}), small)  # 2 MB
    assert "ARCHIVE_BOMB" in findings


def test_stream_formats_stop_at_the_bound_while_inflating() -> None:
    limits = WalkLimits(archive=ArchiveLimits(max_expanded_bytes=2 * 1024 * 1024))
    zeros = b"\0" * 8_000_000
    for name, packed in (("z.gz", gzip.compress(zeros)), ("z.xz", lzma.compress(zeros)),
                         ("z.bz2", bz2.compress(zeros))):  # fmt: skip
        items, findings = attach(name, packed, limits)
        assert "ARCHIVE_BOMB" in findings, name
        assert sum(len(d) for p, d in items.items() if "!" in p) <= 2 * 1024 * 1024


def test_ten_nested_zips_are_cut_at_the_depth_bound_and_unpacked_below_it() -> None:
    ten = nested_zips(10)
    items, findings = attach("n.zip", ten)
    assert "ARCHIVE_TOO_DEEP" in findings
    assert EXE not in items.values()
    items, findings = attach("n.zip", ten, WalkLimits(archive=ArchiveLimits(max_depth=12)))
    deepest = next(p for p, d in items.items() if d == EXE)
    assert deepest.count("!") == 10 and deepest.endswith("!payload.exe")
    assert "ARCHIVE_TOO_DEEP" not in findings


def test_member_count_is_bounded_over_the_whole_message() -> None:
    many = zip_bytes({f"f{i}.txt": b"x" for i in range(30)})
    limits = WalkLimits(archive=ArchiveLimits(max_members=50))
    data = message(("a.zip", many, "application/zip"), ("b.zip", many, "application/zip"))
    walk = walk_message(data, limits)
    assert walk.cut and any("archive members" in d for n, d in walk.findings if n == "ARCHIVE_BOMB")


@pytest.mark.skipif(shutil.which("zip") is None, reason="the zip command (Debian zip) is not installed")
def test_an_encrypted_zip_is_reported_and_its_names_still_listed(tmp_path: Path) -> None:
    (tmp_path / "payload.exe").write_bytes(EXE)
    subprocess.run(["zip", "-q", "-P", "secret", "enc.zip", "payload.exe"], cwd=tmp_path, check=True)
    walk = walk_message(message(("enc.zip", (tmp_path / "enc.zip").read_bytes(), "application/zip")))
    assert "ARCHIVE_ENCRYPTED" in {n for n, _ in walk.findings}
    member = next(e for e in walk.entries if e.member)
    assert "payload.exe" in member.names and member.item.data == b""


def test_encrypted_7z_with_and_without_encrypted_names() -> None:
    _, findings = attach("a.7z", seven_zip({"x.exe": EXE}, password="secret"))
    assert "ARCHIVE_ENCRYPTED" in findings
    _, findings = attach("a.7z", seven_zip({"x.exe": EXE}, password="secret", encrypt_names=True))
    assert "ARCHIVE_ENCRYPTED" in findings


def test_an_encrypted_office_document_is_recognised_by_its_streams() -> None:
    # The OLE header and the two directory names MS-OFFCRYPTO puts in an encrypted OOXML file.
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
    ole += "EncryptionInfo".encode("utf-16-le").ljust(64, b"\0") + "EncryptedPackage".encode("utf-16-le")
    _, findings = attach("salary.xlsx", ole)
    assert "ARCHIVE_ENCRYPTED" in findings
    _, findings = attach("plain.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    assert "ARCHIVE_ENCRYPTED" not in findings


@pytest.mark.parametrize(
    ("member", "why"),
    [
        ("../../etc/cron.d/x", "path traversal"),
        ("/etc/passwd", "absolute path"),
        ("C:\\Windows\\evil.dll", "absolute path"),
        ("invoice\u202efdp.exe", "bidirectional control"),
        ("a" * 10_000 + ".exe", "name of 10004 characters"),
    ],
)
def test_hostile_member_names_are_escaped_and_reported(member: str, why: str) -> None:
    for archive in (zip_bytes({member: EXE}), tar_bytes({member: EXE})):
        walk = walk_message(message(("h.zip", archive, "application/octet-stream")))
        hit = next(e for e in walk.entries if e.member)
        assert hit.item.data == EXE
        assert len(hit.item.path) < 400 and "\u202e" not in hit.item.path
        assert any(why in d for n, d in walk.findings if n == "ATTACH_NAME_HOSTILE"), walk.findings


def test_corrupt_archives_are_a_finding_not_an_error() -> None:
    broken = zip_bytes({"a.txt": b"hello" * 100})[:-30]
    _, findings = attach("broken.zip", broken)
    assert "ARCHIVE_CORRUPT" in findings
    packers = (("t.gz", gzip.compress), ("t.xz", lzma.compress), ("t.bz2", bz2.compress))
    for name, pack in packers:
        packed = pack(EXE)
        _, findings = attach(name, packed[: len(packed) // 2])
        assert "ARCHIVE_CORRUPT" in findings, name


def test_archive_kind_reads_content_not_names() -> None:
    assert archive_kind(zip_bytes({"a": b"b"})) == "zip"
    assert archive_kind(tar_bytes({"a": b"b"})) == "tar"
    assert archive_kind(EXE) is None and archive_kind(b"") is None
