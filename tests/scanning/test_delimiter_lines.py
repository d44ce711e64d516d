"""The walk finds a boundary's delimiter lines by their literal, as the anchored pattern did."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from edgeward.scanning.walk import delimiter_lines


def _by_pattern(data: bytes, boundary: bytes, pos: int, endpos: int) -> list[tuple[int, int, bool]]:
    """What the walk searched with before (``walk.py``, ``walk_file.py``)."""
    pattern = re.compile(rb"^--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$", re.MULTILINE)
    return [(m.start(), m.end(), m.group(1) is not None) for m in pattern.finditer(data, pos, endpos)]


_PIECES = [b"-", b"--", b"\r", b"\n", b"\r\n", b" ", b"\t", b"a", b"b", b"ab", b"x", b"--ab", b"--ab--", b"."]


@given(
    st.lists(st.sampled_from(_PIECES), max_size=60).map(b"".join),
    st.sampled_from([b"ab", b"a", b"", b"a.b", b"-"]),
    st.integers(0, 70),
    st.integers(0, 80),
)
@settings(max_examples=3000, deadline=None)
def test_the_lines_are_those_the_pattern_finds(data: bytes, boundary: bytes, pos: int, endpos: int) -> None:
    assert list(delimiter_lines(data, boundary, pos, endpos)) == _by_pattern(data, boundary, pos, endpos)


def test_a_delimiter_at_the_start_of_the_search_only_counts_at_a_line_start() -> None:
    data = b"x--ab\n--ab--\r\n"
    assert list(delimiter_lines(data, b"ab", 1, len(data))) == [(6, 13, True)]
    assert list(delimiter_lines(data, b"ab", 0, 5)) == []
    assert list(delimiter_lines(b"--ab \t\r", b"ab", 0, 7)) == [(0, 7, False)]
    assert list(delimiter_lines(b"--ab \rx\n", b"ab", 0, 8)) == []
