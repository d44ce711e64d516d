"""The spool's file for a large message, the MessageFile view of it, and its commit copy."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeward.message_file import MessageFile
from edgeward.queue.files import open_new
from edgeward.queue.model import MessageRecord
from edgeward.queue.spill import SpillFile
from edgeward.queue.spool import Spool


@settings(max_examples=200, deadline=None)
@given(
    header=st.binary(max_size=50),
    body=st.binary(max_size=3000),
    offset=st.integers(0, 40),
    start=st.integers(0, 4000),
    length=st.integers(0, 4000),
    chunk=st.integers(1, 700),
)
def test_the_logical_message_reads_the_same_every_way(
    tmp_path_factory: pytest.TempPathFactory, header: bytes, body: bytes, offset: int, start: int,
    length: int, chunk: int,
) -> None:  # fmt: skip
    path = tmp_path_factory.mktemp("mf") / "m"
    junk = os.urandom(offset)  # the file's own header, replaced by ``header``
    path.write_bytes(junk + body)
    message = MessageFile(path, header, offset, offset + len(body))
    logical = header + body
    assert message.size == len(logical)
    assert b"".join(message.chunks(chunk=chunk)) == logical
    assert all(len(piece) <= chunk for piece in message.chunks(chunk=chunk))
    assert message.read(start, length) == logical[start : start + length]
    assert b"".join(message.chunks(start, start + length, chunk)) == logical[start : start + length]
    assert b"".join(message.body_chunks(chunk)) == body
    assert message.with_header(b"X: y\r\n\r\n").materialize() == b"X: y\r\n\r\n" + body


def test_spill_file_is_private_and_goes_when_aborted(tmp_path: Path) -> None:
    sink = SpillFile(tmp_path)
    mode = stat.S_IMODE(os.stat(sink.path).st_mode)
    assert mode == 0o600
    sink.write(b"Subject: a\r\n\r\nbody\r\n")
    message = sink.finish(b"Subject: a\r\n\r\n")
    assert message.materialize() == b"Subject: a\r\n\r\nbody\r\n"
    assert message.body_offset == len(b"Subject: a\r\n\r\n")
    other = SpillFile(tmp_path)
    other.write(b"x" * 100)
    other.abort()
    assert not other.path.exists()
    with pytest.raises(OSError):
        other.write(b"more")


def test_a_planted_link_is_never_written_through(tmp_path: Path) -> None:
    sink = SpillFile(tmp_path)
    sink.abort()
    target = tmp_path / "elsewhere"
    os.symlink(target, sink.path)
    with pytest.raises(FileExistsError):
        os.open(sink.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    assert not target.exists()


def test_commit_copy_joins_the_header_and_the_body(tmp_path: Path) -> None:
    source = tmp_path / "src"
    body = os.urandom(300_000)
    source.write_bytes(b"Old: header\r\n\r\n" + body)
    dest = tmp_path / "dest"
    os.close(open_new(dest, b"Received: x\r\nNew: header\r\n\r\n", source, 15, 15 + len(body)))
    assert dest.read_bytes() == b"Received: x\r\nNew: header\r\n\r\n" + body
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):  # never over an existing file
        open_new(dest, b"", source, 0, 1)


def test_spool_accepts_a_message_file_and_recovery_removes_leftovers(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    sink = spool.spill_file()
    body = b"line\r\n" * 100_000
    sink.write(b"Subject: big\r\n\r\n" + body)
    message = sink.finish(b"Subject: big\r\n\r\n").with_header(b"Received: by us\r\nSubject: big\r\n\r\n")
    record = MessageRecord(spool.new_id(), "a@example.net", (), 0.0, message.size)

    async def accept() -> str:
        return await spool.accept_file(record, message)

    msg_id = asyncio.run(accept())
    assert spool.read_data(msg_id) == b"Received: by us\r\nSubject: big\r\n\r\n" + body
    message.discard()
    leftover = spool.spill_file()
    leftover.write(b"half a message")
    report = spool.recover()
    assert report.tmp_removed == 1
    assert not leftover.path.exists()
    assert spool.read_data(msg_id).endswith(body)
