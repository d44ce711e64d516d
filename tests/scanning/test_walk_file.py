"""``walk_file`` gives what ``walk_message`` gives over the same message, holding little of it.

The differential tests walk every parser-test message of the shared corpora and messages built
around every attachment sample, once in memory and once from a file with windows and leaf bounds
forced tiny, so the windowed structure search and the streamed decoders run on all of them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import random
import tarfile
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeward.config.antivirus import AntivirusConfig
from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.filters.agents.antivirus import Antivirus, message_items
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.message import MessageView
from edgeward.headers import parse_headers
from edgeward.message_file import MessageFile
from edgeward.ports import ScanItem
from edgeward.scanning import in_memory
from edgeward.scanning.clamd import ClamdScanner, clamd_items
from edgeward.scanning.policy import Engine, MultiEnginePolicy
from edgeward.scanning.walk import Walk, WalkLimits, walk_message
from edgeward.scanning.walk_file import walk_file
from edgeward.types import Action, Peer
from tests.scanning.builders import message
from tests.scanning.clamd import CLAMD, EICAR, STREAM_MAX, Clamd, start_clamd

CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
# (window, leaf bound, long line): lines longer than a window, delimiters across windows, every
# leaf streamed, the in-memory path for small leaves, long lines skipped or gathered whole.
SHAPES = [(61, 0, 200), (1024, 1024, 0), (4096, 300, 5000)]


def spooled(tmp: Path, data: bytes, name: str = "m") -> MessageFile:
    """``data`` as the receiving side keeps it: the header in memory, the body in a file."""
    blank = min((i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0), default=-1)
    header_end = len(data) if blank < 0 else blank + (4 if data[blank : blank + 4] == b"\r\n\r\n" else 2)
    path = tmp / name
    # Some junk before the body, as the spool file holds the header it was received with.
    path.write_bytes(b"J" * 7 + data[header_end:])
    return MessageFile(path, data[:header_end], 7, 7 + len(data) - header_end)


def compare(data: bytes, got: Walk, want: Walk) -> None:
    assert got.findings == want.findings
    assert got.cut == want.cut
    assert got.signed == want.signed
    assert len(got.entries) == len(want.entries)
    for a, b in zip(got.entries, want.entries, strict=True):
        assert (a.item.path, a.item.name, a.item.declared_type, a.item.true_type) == (
            b.item.path, b.item.name, b.item.declared_type, b.item.true_type,
        )  # fmt: skip
        assert (a.names, a.declared_types, a.span, a.signed, a.member) == (
            b.names, b.declared_types, b.span, b.signed, b.member,
        )  # fmt: skip
        if a.item.partial:
            assert b.item.data.startswith(a.item.data)
            assert a.item.sha256 == hashlib.sha256(b.item.data).hexdigest()
        else:
            assert a.item.data == b.item.data
    assert [i.path for i in got.items] == [i.path for i in want.items]


def parser_messages() -> Iterator[tuple[str, bytes]]:
    folder = CORPORA / "parser-tests"
    for archive in sorted(folder.glob("*.tar.gz")):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.size:
                    handle = tar.extractfile(member)
                    if handle is not None:
                        yield member.name, handle.read()


def attachment_messages() -> Iterator[tuple[str, bytes]]:
    rng = random.Random(7)
    for archive in sorted((CORPORA / "attachments").glob("*.tar.gz")):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is None:
                    continue
                content = handle.read()
                name = member.name.rsplit("/", 1)[-1]
                yield member.name, message((name, content, "application/octet-stream"))
                # Hand-written parts: quoted-printable, a text part with a pasted uuencoded copy.
                qp = base64.encodebytes(content[:3000]).decode().replace("=", "=3D")
                uu = "".join(f"M{rng.choice('ABCDEFGH') * 60}\n" for _ in range(40))
                text = f"hello\n\nbegin 644 {name}\n{uu}`\nend\nbye\n" * 3
                yield (
                    member.name + "+qp",
                    message((name, content, "application/octet-stream"), text=text).replace(
                        b"see attached", qp.encode()[:4000]
                    ),
                )


def corpus(kind: str) -> list[tuple[str, bytes]]:
    if not CORPORA.is_dir():
        pytest.skip(f"shared corpora not found at {CORPORA}")
    return list(parser_messages() if kind == "parser" else attachment_messages())


def differential(
    tmp_path: Path, items: list[tuple[str, bytes]], hold: bool, limits: WalkLimits | None = None
) -> int:
    checked = 0
    limits = WalkLimits(hold_leaves=hold) if limits is None else limits
    for index, (name, data) in enumerate(items):
        want = walk_message(data, limits)
        spool = spooled(tmp_path, data, f"m{index}")
        assert spool.materialize() == data
        for window, bound, long_line in SHAPES:
            try:
                got = walk_file(spool, limits, window=window, leaf_bound=bound, long_line=long_line)
                compare(data, got, want)
            except AssertionError as exc:
                raise AssertionError(f"{name} (window {window}, leaf bound {bound}): {exc}") from exc
        spool.discard()
        checked += 1
    return checked


@pytest.mark.parametrize("hold", [True, False])
def test_parser_corpus_walks_the_same_from_a_file(tmp_path: Path, hold: bool) -> None:
    assert differential(tmp_path, corpus("parser"), hold) > 500


@pytest.mark.parametrize("hold", [True, False])
def test_attachment_corpus_walks_the_same_from_a_file(tmp_path: Path, hold: bool) -> None:
    assert differential(tmp_path, corpus("attachments"), hold) > 100


def _tricky() -> list[bytes]:
    big_text = b"".join(b"line %d of plain text =\r\n" % i for i in range(3000))
    uu = b"".join(b"M" + bytes([65 + i % 20]) * 60 + b"\r\n" for i in range(30))
    long_html = b"<p>" + b"minified html " * 30000 + b"</p>\r\n"
    return [
        # Lines far longer than a window: skipped, but not those starting like a delimiter.
        b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: text/html\r\n\r\n"
        + long_html + b"--qq" + b"x" * 9000 + b"\r\n--q" + b" " * 9000
        + b"\r\nContent-Type: text/plain\r\n\r\n" + b"begin 644 " + b"n" * 9000 + b"\r\n"
        + long_html + b"end\r\n" + long_html + b"--q--" + b"\t" * 7000,
        # Nested uuencoded blocks, one never closed, in a large 8bit text.
        b"Content-Type: text/plain\r\n\r\n" + big_text + b"begin 644 a.exe\r\n" + uu
        + b"begin 600 b.bin\r\n" + uu + b"end\r\n" + big_text + b"begin-base64 644 c\r\nTVqQAA==\r\n",
        # Quoted-printable with soft breaks, a base64 part with junk and a stray single char.
        message(("x.bin", bytes(range(256)) * 200, "application/octet-stream")).replace(
            b"Content-Transfer-Encoding: base64\r\n\r\n", b"Content-Transfer-Encoding: base64\r\n\r\n!!*\r\n"
        ).replace(b"\r\n--=", b"Q\r\n--=", 1),
        b"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + b"<p>=41=\r\n=42 caf=C3=A9</p>=\r\n" * 2000 + b"=4",
        # A base64 message/rfc822, an unclosed multipart, a delimiter at the very end.
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\nContent-Type: message/rfc822\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(message(("e.com", EICAR, "application/octet-stream")))
        + b"\r\n--b\r\nContent-Type: text/plain\r\n\r\n" + big_text + b"\r\n--b",
        b"\n\nno header",
        b"",
        b"Subject: only a header, no body",
        b"Content-Type: multipart/mixed; boundary=\"x\"\r\n\r\n"
        b"--x\r\nno header line here\r\n\r\n--x--\r\nepi",
    ]  # fmt: skip


def test_tricky_messages_walk_the_same_from_a_file(tmp_path: Path) -> None:
    for hold in (True, False):
        samples = [(f"tricky{i}", d) for i, d in enumerate(_tricky())]
        assert differential(tmp_path, samples, hold) == len(samples)
        # The bounds cut the streamed leaves where they cut the in-memory ones.
        for bounds in ({"max_decoded_bytes": 5000}, {"max_decoded_bytes": 70000, "max_parts": 3}):
            limits = WalkLimits(hold_leaves=hold, **bounds)  # type: ignore[arg-type]
            assert differential(tmp_path, samples, hold, limits) == len(samples)


def _big_pdf_message(size: int = 7 * 1024 * 1024) -> bytes:
    rng = random.Random(1)
    pdf = b"%PDF-1.7\n" + rng.randbytes(size)
    text = "A plain covering note.\n" * 100
    return message(("report.pdf", pdf, "application/pdf"), text=text)


def _walk_peak(tmp_path: Path, data: bytes, limits: WalkLimits) -> tuple[Walk, int]:
    spool = spooled(tmp_path, data)
    del data
    tracemalloc.start()
    try:
        walk = walk_file(spool, limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return walk, peak


def test_a_10mb_message_with_a_7mb_pdf_is_walked_in_under_2mb(tmp_path: Path) -> None:
    data = _big_pdf_message()
    data += b"X" * (10 * 1024 * 1024 - len(data))  # epilogue up to 10 MB
    want = walk_message(data, WalkLimits(hold_leaves=False))
    walk, peak = _walk_peak(tmp_path, data, WalkLimits(hold_leaves=False))
    assert peak < 2 * 1024 * 1024, peak
    pdf = next(e for e in walk.entries if e.item.name == "report.pdf")
    assert pdf.item.partial and pdf.item.true_type == "application/pdf"
    compare(data, walk, want)


def test_eicar_inside_a_large_zip_is_still_found(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("filler.bin", random.Random(2).randbytes(2 * 1024 * 1024))
        z.writestr("eicar.com", EICAR)
    data = message(("bundle.zip", buf.getvalue(), "application/zip"))
    walk = walk_file(spooled(tmp_path, data), WalkLimits(hold_leaves=False))
    found = [i for i in walk.items if i.path.endswith("!eicar.com")]
    assert found and found[0].data == EICAR
    assert not [i for i in walk.items if i.partial]


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    if CLAMD is None:
        pytest.skip("clamd is not installed (scripts/install-test-deps.sh)")
    server = start_clamd(tmp_path_factory.mktemp("clamd"))
    yield server
    server.stop()


def test_clamd_finds_eicar_in_a_large_file_message_read_from_the_file(clamd: Clamd, tmp_path: Path) -> None:
    # Under the test clamd's StreamMaxLength (1 MiB), yet with a leaf too large to keep whole.
    big = b"%PDF-1.4\n" + random.Random(3).randbytes(600 * 1024)
    data = message(("big.pdf", big, "application/pdf"), ("eicar.com", EICAR, "application/octet-stream"))
    assert len(data) < STREAM_MAX
    spool = spooled(tmp_path, data)
    view = MessageView.from_file(spool, parse_headers(spool.header), WalkLimits(hold_leaves=False))
    items = message_items(b"", view.walk, spool)
    assert any(item.partial for item in items)
    sent = clamd_items(items)
    assert [(item.path, item.source) for item in sent] == [("message", spool)]
    scanner = ClamdScanner(str(clamd.socket), max_stream=STREAM_MAX, chunk_size=4096)
    hits = asyncio.run(scanner.scan(items))
    assert [h.path for h in hits] == ["message"]
    # The agent does the same from the context the receiving side gives it.
    config = AntivirusConfig.model_validate({"enabled": True})
    av = Antivirus(MultiEnginePolicy([Engine(scanner, timeout=20.0)], config.require), config)
    session = SessionInfo("s1", Peer("192.0.2.1", 1234), ReceiveConnectorConfig(name="internet"))
    ctx = StageContext(Stage.EOD, session, headers=view.headers, message=view, spooled=spool)
    outcome = asyncio.run(av.check(Stage.EOD, ctx))
    assert outcome.action is Action.REJECT and "(message)" in str(outcome.reply)


def test_a_file_message_without_partial_items_sends_clamd_its_parts(tmp_path: Path) -> None:
    data = message(("eicar.com", EICAR, "application/octet-stream"))
    spool = spooled(tmp_path, data)
    walk = walk_file(spool, WalkLimits(hold_leaves=False))
    items = message_items(b"", walk, spool)
    assert not any(item.partial or item.source for item in items)
    assert [item.data for item in items if item.name == "eicar.com"] == [EICAR]


def test_engines_that_read_bytes_skip_partial_and_file_items(tmp_path: Path) -> None:
    spool = spooled(tmp_path, message())
    items = [ScanItem(b"x", "1"), ScanItem(b"y", "2", partial=True), ScanItem(b"", "message", source=spool)]
    assert [item.path for item in in_memory(items)] == ["1"]


def test_the_content_filter_parse_of_a_file_message_reads_only_its_beginning(tmp_path: Path) -> None:
    data = _big_pdf_message(2 * 1024 * 1024)
    spool = spooled(tmp_path, data)
    view = MessageView.from_file(spool, parse_headers(spool.header))
    assert view.data == b"" and view.size == len(data)
    assert view.mime is not None
    assert [e.item.name for e in view.walk.entries] == [e.item.name for e in walk_message(data).entries]


def test_a_hash_list_matches_a_partial_item_by_the_digest_of_its_whole(tmp_path: Path) -> None:
    from edgeward.scanning.hashlist import _digests

    data = _big_pdf_message(400 * 1024)
    walk = walk_file(spooled(tmp_path, data), WalkLimits(hold_leaves=False))
    (pdf,) = [item for item in walk.items if item.partial]
    whole = next(i for i in walk_message(data).items if i.name == "report.pdf").data
    assert _digests([pdf]) == [hashlib.sha256(whole).hexdigest()]
