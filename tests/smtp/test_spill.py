"""A large message written piece by piece to a sink gives the bytes the in-memory path gives.

The spill path (``smtp.data._Spill``) unstuffs, checks and normalises each piece on its own;
these properties feed the same stream both ways, split at random points, and compare.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edgeward.message_file import MessageFile
from edgeward.smtp import replies as r
from edgeward.smtp.data import TERMINATOR, DataReader, MessageBuffer, finish_bdat, finish_data
from edgeward.smtp.events import MessageData


class MemorySink:
    """Collects what the spill path writes (a unit-test stand-in for the spool's file)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.chunks: list[bytes] = []
        self.finished = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def finish(self, header: bytes) -> MessageFile:
        self.finished = True
        path = self.folder / "m"
        path.write_bytes(b"".join(self.chunks))
        return MessageFile(path, header, len(header), path.stat().st_size)

    def abort(self) -> None:
        self.aborted = True


class Sinks:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.made: list[MemorySink] = []

    def __call__(self) -> MemorySink:
        sink = MemorySink(self.folder)
        self.made.append(sink)
        return sink


# Bytes that matter to the rules: line ends of every kind, dots at line starts, NUL.
_PIECES = st.sampled_from(
    [b"\r\n", b"\n", b"\r", b".", b"..", b"\r\n.", b"\x00", b"a", b"b c", b"\t", b"x" * 40]
)
_HEADER = b"From: <a@example.net>\r\nSubject: spill\r\n\r\n"


def _body(pieces: list[bytes]) -> bytes:
    body = _HEADER + b"".join(pieces)
    return body.replace(TERMINATOR, b"\r\n..\r\n")  # the terminator must only end the stream


def _cuts(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points})
    return [data[a:b] for a, b in zip([0, *marks], [*marks, len(data)], strict=True)]


def _read_data(stream: bytes, cuts: list[int], bare_lf: str, sinks: Sinks | None) -> MessageData:
    reader = DataReader(
        1 << 20, 4096, sinks, normalize=bare_lf == "normalize", spill_above=50
    )  # a tiny inline budget, so every message here spills
    for piece in _cuts(stream, cuts):
        consumed = reader.feed(piece)
        if consumed is not None:
            break
    return finish_data(reader.message, bare_lf)  # type: ignore[arg-type]


def _content(event: MessageData) -> bytes:
    if event.spooled is None:
        return event.data
    return event.spooled.materialize()


@settings(max_examples=400, deadline=None)
@given(
    pieces=st.lists(_PIECES, min_size=0, max_size=120),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
    bare_lf=st.sampled_from(["reject", "normalize"]),
)
def test_data_spilled_equals_in_memory(tmp_path_factory: object, pieces: list[bytes], cuts: list[int],
                                       bare_lf: str) -> None:  # fmt: skip
    folder = tmp_path_factory.mktemp("spill")  # type: ignore[attr-defined]
    stream = _body(pieces) + TERMINATOR
    whole = _read_data(stream, [], bare_lf, None)
    sinks = Sinks(folder)
    spilled = _read_data(stream, cuts, bare_lf, sinks)
    assert spilled.violation == whole.violation
    if whole.violation is None:
        assert _content(spilled) == whole.data
        if sinks.made:
            assert spilled.spooled is not None
            assert spilled.spooled.header == whole.data[: len(spilled.spooled.header)]
            assert not sinks.made[0].aborted
    else:
        assert spilled.spooled is None
        assert all(s.aborted for s in sinks.made)


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(_PIECES, min_size=0, max_size=120),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
    binary=st.booleans(),
)
def test_bdat_spilled_equals_in_memory(tmp_path_factory: object, pieces: list[bytes], cuts: list[int],
                                       binary: bool) -> None:  # fmt: skip
    folder = tmp_path_factory.mktemp("spill")  # type: ignore[attr-defined]
    stream = _HEADER + b"".join(pieces)
    plain = MessageBuffer(1 << 20, 4096)
    plain.append(stream)
    whole = finish_bdat(plain, binary)
    sinks = Sinks(folder)
    buffer = MessageBuffer(1 << 20, 4096, sinks, spill_above=50, mode=(False, not binary, True))
    for piece in _cuts(stream, cuts):
        buffer.append(piece)
    spilled = finish_bdat(buffer, binary)
    assert spilled.violation == whole.violation
    if whole.violation is None:
        assert _content(spilled) == whole.data


def test_small_message_stays_in_memory(tmp_path: Path) -> None:
    sinks = Sinks(tmp_path)
    reader = DataReader(1 << 20, 4096, sinks, spill_above=1000)
    assert reader.feed(_HEADER + b"short\r\n.\r\n") is not None
    event = finish_data(reader.message, "reject")
    assert event.spooled is None and event.data == _HEADER + b"short\r\n"
    assert sinks.made == []


def test_header_is_kept_whole_before_spilling(tmp_path: Path) -> None:
    """The spill waits for the end of the header block, so the header checks see all of it."""
    sinks = Sinks(tmp_path)
    header = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 60) for i in range(40)) + b"\r\n"
    reader = DataReader(1 << 20, 8192, sinks, spill_above=100)
    for i in range(0, len(header), 7):
        reader.feed(header[i : i + 7])
    assert reader.feed(b"body\r\n" * 100 + b".\r\n") is not None
    event = finish_data(reader.message, "reject")
    assert event.spooled is not None
    assert event.spooled.header == header
    assert event.spooled.read(0, event.spooled.size) == header + b"body\r\n" * 100


def test_oversized_spilled_message_is_refused_and_its_file_given_up(tmp_path: Path) -> None:
    sinks = Sinks(tmp_path)
    reader = DataReader(2000, 4096, sinks, spill_above=100)
    reader.feed(_HEADER + b"y" * 500 + b"\r\n")
    assert sinks.made and not sinks.made[0].aborted
    reader.feed(b"z" * 3000)
    assert sinks.made[0].aborted
    assert reader.feed(b"\r\n.\r\n") is not None
    assert finish_data(reader.message, "reject").violation == r.MESSAGE_TOO_BIG


def test_a_sink_that_cannot_be_written_refuses_with_a_temporary_error(tmp_path: Path) -> None:
    class FullSink(MemorySink):
        def write(self, data: bytes) -> None:
            raise OSError(28, "No space left on device")

    reader = DataReader(1 << 20, 4096, lambda: FullSink(tmp_path), spill_above=50)
    reader.feed(_HEADER + b"q" * 200 + b"\r\n")
    assert reader.feed(b".\r\n") is not None
    event = finish_data(reader.message, "reject")
    assert event.violation is not None and event.violation.code == 452 and event.violation.enhanced == "4.3.1"
