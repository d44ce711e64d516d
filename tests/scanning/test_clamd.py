"""``ClamdScanner`` beyond the conformance suite: TCP, what clamd is sent, limits, bad answers."""

from __future__ import annotations

import asyncio
import base64
import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeward.ports import ScanEngineError, ScanItem
from edgeward.scanning import ItemTooLarge
from edgeward.scanning.clamd import ClamdScanner, clamd_items
from edgeward.scanning.walk import walk_message
from tests.scanning.builders import message
from tests.scanning.clamd import CLAMD, EICAR, STREAM_MAX, Clamd, start_clamd


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    if CLAMD is None:
        pytest.skip("clamd is not installed (scripts/install-test-deps.sh)")
    server = start_clamd(tmp_path_factory.mktemp("clamd"))
    yield server
    server.stop()


def zipped(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def test_tcp_socket_gives_the_same_answers(clamd: Clamd) -> None:
    scanner = ClamdScanner(("127.0.0.1", clamd.port), max_stream=STREAM_MAX)
    hits = asyncio.run(scanner.scan([ScanItem(b"clean", "1"), ScanItem(EICAR, "2")]))
    assert [h.path for h in hits] == ["2"]
    assert asyncio.run(scanner.status()).healthy


def test_clamd_unpacks_archives_and_mime_itself(clamd: Clamd) -> None:
    scanner = ClamdScanner(str(clamd.socket), max_stream=STREAM_MAX)
    twice = zipped("outer.zip", zipped("eicar.com", EICAR))
    message = (
        b"From: a@example.test\r\nTo: b@example.test\r\nSubject: zip\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        b"--b1\r\nContent-Type: application/zip; name=a.zip\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(twice) + b"\r\n--b1--\r\n"
    )  # fmt: skip
    hits = asyncio.run(scanner.scan([ScanItem(twice, "2", "a.zip"), ScanItem(message, "message")]))
    assert [h.path for h in hits] == ["2", "message"]


def test_archive_members_are_left_to_clamd() -> None:
    items = [ScanItem(b"text", "1"), ScanItem(b"PK..", "2", "a.zip"), ScanItem(b"MZ", "2!a.exe", "a.exe")]
    assert [i.path for i in clamd_items(items)] == ["1", "2"]
    # Only members (the walk never yields that): better scanned twice than not at all.
    assert clamd_items([ScanItem(b"MZ", "2!a.exe")]) == [ScanItem(b"MZ", "2!a.exe")]


def test_a_stream_limit_below_max_stream_is_never_clean(clamd: Clamd) -> None:
    # Misconfigured: clamd's StreamMaxLength is below what the scanner thinks; clamd refuses.
    scanner = ClamdScanner(str(clamd.socket), max_stream=8 * STREAM_MAX, chunk_size=64 * 1024)
    for size in (STREAM_MAX + 1, 4 * STREAM_MAX):
        with pytest.raises(ScanEngineError):
            asyncio.run(scanner.scan([ScanItem(b"a" * size, "1")]))
    # and the connection it cut leaves clamd serving the next message
    assert asyncio.run(scanner.scan([ScanItem(EICAR, "1")]))


def test_an_oversized_item_is_not_sent(tmp_path: Path) -> None:
    # Nothing listens: a refusal before connecting is ItemTooLarge, not "unreachable".
    scanner = ClamdScanner(str(tmp_path / "none.sock"), max_stream=10)
    with pytest.raises(ItemTooLarge):
        asyncio.run(scanner.scan([ScanItem(b"x" * 11, "1")]))


async def _serve_once(path: Path, answer: bytes | None, seen: list[bytes]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen.append(await reader.read(64))
            if answer is None:
                await asyncio.sleep(3600)  # a clamd that hangs
            writer.write(answer)
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_unix_server(handle, str(path))


@pytest.mark.parametrize(
    "answer",
    [b"stream: OK but not\0", b"garbage", b"", b"Can't allocate memory ERROR\0", b"x" * 5000 + b"\0"],
)
def test_an_unreadable_answer_is_never_clean(tmp_path: Path, answer: bytes) -> None:
    async def go() -> None:
        seen: list[bytes] = []
        server = await _serve_once(tmp_path / "c.sock", answer, seen)
        try:
            with pytest.raises(ScanEngineError):
                await ClamdScanner(str(tmp_path / "c.sock")).scan([ScanItem(b"data", "1")])
        finally:
            server.close()
        assert seen and seen[0].startswith(b"zINSTREAM\0")

    asyncio.run(go())


def test_a_hanging_clamd_times_out(tmp_path: Path) -> None:
    async def go() -> None:
        server = await _serve_once(tmp_path / "h.sock", None, [])
        try:
            scanner = ClamdScanner(str(tmp_path / "h.sock"), timeout=0.2)
            with pytest.raises(ScanEngineError, match="did not answer"):
                await scanner.scan([ScanItem(b"data", "1")])
            status = await scanner.status()
            assert not status.healthy and "no answer" in status.detail
        finally:
            server.close()

    asyncio.run(go())


def test_members_are_not_sent_but_their_archive_is(clamd: Clamd) -> None:
    scanner = ClamdScanner(str(clamd.socket), max_stream=STREAM_MAX)
    archive = zipped("eicar.com", EICAR)
    # The member alone would be found; sent through its archive it is found once, at the archive.
    hits = asyncio.run(scanner.scan([ScanItem(archive, "2", "a.zip"), ScanItem(EICAR, "2!eicar.com")]))
    assert [h.path for h in hits] == ["2"]


def test_a_bang_in_a_file_name_does_not_hide_the_part_from_clamd(clamd: Clamd) -> None:
    # "!" separates archive members in a path; in a sender's file name the walk escapes it.
    data = message(("x!y.zip", zipped("eicar.com", EICAR), "application/zip"))
    items = walk_message(data).items
    assert [i.path for i in clamd_items(items)] == ["1", "2/x\\x21y.zip"]
    hits = asyncio.run(ClamdScanner(str(clamd.socket), max_stream=STREAM_MAX).scan(items))
    assert [h.path for h in hits] == ["2/x\\x21y.zip"]


def test_many_items_share_sessions_and_keep_their_order(clamd: Clamd) -> None:
    scanner = ClamdScanner(str(clamd.socket), max_stream=STREAM_MAX, batch=4)
    items = [ScanItem(b"clean %d" % n + b"x" * (n * 997), str(n)) for n in range(11)]
    items[2] = ScanItem(b"a " + EICAR, "2")
    items[9] = ScanItem(zipped("e.com", EICAR), "9")
    items[10] = ScanItem(b"zINSTREAM\0" + EICAR + b"\0", "10")  # data that looks like a command is data
    hits = asyncio.run(scanner.scan(items))
    assert [h.path for h in hits] == ["2", "9", "10"]


def test_a_session_cut_by_the_stream_limit_is_never_clean(clamd: Clamd) -> None:
    scanner = ClamdScanner(str(clamd.socket), max_stream=8 * STREAM_MAX)
    items = [ScanItem(b"small", "1"), ScanItem(b"a" * (2 * STREAM_MAX), "2"), ScanItem(b"small", "3")]
    with pytest.raises(ScanEngineError):
        asyncio.run(scanner.scan(items))


def test_status_reads_the_database_version_and_date(tmp_path: Path) -> None:
    answers = {b"zPING\0": b"PONG\0", b"zVERSION\0": b"ClamAV 1.4.6/27840/Tue Dec  1 09:30:00 2026\0"}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(answers[await reader.readuntil(b"\0")])
            await writer.drain()
        finally:
            writer.close()

    async def go() -> None:
        server = await asyncio.start_unix_server(handle, str(tmp_path / "v.sock"))
        try:
            status = await ClamdScanner(str(tmp_path / "v.sock")).status()
        finally:
            server.close()
        assert status.healthy and status.version == "ClamAV 1.4.6, database 27840"
        expected = time.mktime((2026, 12, 1, 9, 30, 0, 0, 0, -1))
        assert status.signatures_at == expected

    asyncio.run(go())
