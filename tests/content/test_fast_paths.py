"""The fast paths of the parser give the same answers as the general code they short-cut."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeward.content.facts import extract_facts, is_ip_literal
from edgeward.content.htmltext import read_html
from edgeward.content.mime import parse_message


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("1.2.3.4", True),
        ("[1.2.3.4]", True),
        ("::1", True),
        ("[2001:db8::1]", True),
        ("0x7f000001", True),
        ("0xdeadbeef", True),
        ("2130706433", True),
        ("example.com", False),
        ("host1.example2", False),
        ("", False),
    ],
)
def test_ip_literal(host: str, expected: bool) -> None:
    assert is_ip_literal(host) is expected


def test_urls_found_and_removed_in_any_case() -> None:
    raw = b"Subject: x\n\nSee HTTP://Example.COM/Path and www.Other.org/x today.\n"
    facts = extract_facts(parse_message(raw))
    assert facts.hosts == ["example.com", "www.other.org"]
    assert "Example" not in facts.text and "Other" not in facts.text
    assert "today" in facts.text


def test_urls_found_when_lowercasing_changes_offsets() -> None:
    # U+0130 lower-cases to two characters, so offsets of the lower-cased copy do not apply.
    raw = "Subject: x\nContent-Type: text/plain; charset=utf-8\n\n\u0130\u0130 http://a.example.net/ end\n"
    facts = extract_facts(parse_message(raw.encode()))
    assert facts.hosts == ["a.example.net"]
    assert facts.text.rstrip().endswith("end") and "example" not in facts.text


def test_hidden_text_and_password_inputs_in_any_case() -> None:
    summary = read_html('<DIV STYLE="Display: None">x</DIV><FONT SIZE=1>y</FONT><INPUT TYPE="PASSWORD">')
    assert summary.hidden_text == 2
    assert summary.password_inputs == 1


def _words_reference(text: str, limit: int) -> list[str]:
    """``features._words`` as it was, lowering and scanning the whole text."""
    from edgeward.content import features

    lowered = features._DIGITS.sub("9", text.lower())
    words = features._WORD.findall(lowered, 0, limit * 40)[:limit]
    if any(marker in lowered for marker in features._CORPUS_WORDS):
        words = [w for w in words if not any(marker in w for marker in features._CORPUS_WORDS)]
    return words


# Letters whose lower case depends on what follows (the final sigma) or is longer (U+0130),
# case-ignorable marks and apostrophes, digits, white space and the corpus markers.
_PIECES = [
    "Σ",
    "ΑΣ",
    "ς",
    "İ",
    "\u0301",
    "'",
    ".",
    "·",
    "A",
    "b",
    "7",
    "0",
    "9",
    "٣",  # ARABIC-INDIC DIGIT THREE: a digit outside ASCII
    "０",  # FULLWIDTH DIGIT ZERO
    "K",  # KELVIN SIGN, lower-cased to an ASCII k
    " ",
    "\n",
    "\t",
    "zzzz",
    "SpamAssassin",
    "_",
    "-",
]


@given(
    st.lists(st.tuples(st.sampled_from(_PIECES), st.integers(1, 60)), max_size=40).map(
        lambda runs: [piece * n for piece, n in runs]
    ),
    st.integers(min_value=1, max_value=6),
)
@settings(max_examples=600, deadline=None)
def test_words_read_from_the_head_of_a_long_text_are_those_of_the_whole(
    pieces: list[str], limit: int
) -> None:
    from edgeward.content.features import _words

    text = "".join(pieces)
    assert _words(text, limit) == _words_reference(text, limit)


@given(
    st.lists(st.tuples(st.sampled_from(_PIECES), st.integers(1, 30)), max_size=60).map(
        lambda runs: "".join(piece * n for piece, n in runs)
    ),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=1, max_value=50),
)
@settings(max_examples=800, deadline=None)
def test_words_read_piece_by_piece_are_those_of_the_whole(text: str, limit: int, step: int) -> None:
    """Pieces cut before white space, as short as one character, read as the whole text."""
    from edgeward.content.features import _words

    assert _words(text, limit, step) == _words_reference(text, limit)


@pytest.mark.parametrize(
    "text",
    [
        "AΣ" + "'" * 100 + "b c",  # the sigma is not final: a cased letter follows, past the window
        "AΣ" + "\u0301" * 50 + " b" + "x" * 100,
        "AΣ" + "'" * 100,  # final
        "İ" * 45 + " tail",
    ],
)
def test_a_lookahead_past_the_window_is_kept(text: str) -> None:
    from edgeward.content.features import _words

    assert _words(text, 1) == _words_reference(text, 1)


def test_words_of_a_text_past_the_window_are_unchanged() -> None:
    from edgeward.content.features import MAX_WORDS, _words

    text = ("Δράση ΟΔΟΣ' " * 20000) + "zzzz tail"
    assert len(text) > MAX_WORDS * 40
    assert _words(text) == _words_reference(text, MAX_WORDS)


def _tag_counts_reference(source: str) -> dict[str, int]:
    """``read_html``'s tag counts as they were: a loop over every match of ``_TAG``."""
    from edgeward.content import htmltext

    counts: dict[str, int] = {}
    for match in htmltext._TAG.finditer(source):
        if match.group(0)[1:2] == "/":
            continue
        name = match.group(1).lower()
        if name in htmltext._COUNTED:
            counts[name] = counts.get(name, 0) + 1
    return counts


# Closing, spaced and doubled slashes, nested brackets, counted and other names in both cases,
# and the Kelvin sign, which lower-cases to an ASCII "k" but is not a tag-name letter.
_MARKUP = ["<", "</", "< /", "<//", "/", ">", " ", "\t", "a", "A", "b", "img", "IMG", "Font", "br", "x1"]
_MARKUP += ["K", "\u212a", "=", '"']


@given(st.lists(st.sampled_from(_MARKUP), max_size=80).map("".join))
@settings(max_examples=1500, deadline=None)
def test_tag_counts_are_those_of_a_loop_over_every_tag(source: str) -> None:
    counts = read_html(source).tag_counts
    expected = _tag_counts_reference(source)
    assert counts == expected
    assert list(counts) == list(expected)  # first-seen order, as before


def _header_lines_reference(block: bytes, max_headers: int) -> tuple[list[tuple[str, list[bytes]]], set[str]]:
    """The header lines as ``_parse_headers`` read them before: a split and a match per line."""
    import re

    field = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*)$")
    raw: list[tuple[str, list[bytes]]] = []
    anomalies: set[str] = set()
    for line in block.split(b"\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if raw:
                raw[-1][1].append(line.strip())
            else:
                anomalies.add("HDR_LEADING_CONTINUATION")
            continue
        match = field.match(line)
        if match is None:
            anomalies.add("HDR_MALFORMED_LINE")
            continue
        if len(raw) >= max_headers:
            anomalies.add("HDR_TOO_MANY")
            break
        raw.append((match.group(1).decode("ascii", "replace").lower(), [match.group(2).strip()]))
    return raw, anomalies


_HEADER_PIECES = [b"a", b"Subject", b"X-Y", b":", b"::", b" ", b"\t", b"\n", b"\n\n", b"x y", b"\xff"]
_HEADER_PIECES += [b"\x00", b"From ", b"\x7f", b"=?utf-8?q?hi?=", b"\x0b"]
# Whole lines too, so that blocks with more fields than the limit, and lines after it, are common.
_HEADER_PIECES += [b"To: v\n", b"To: v\n", b" folded\n", b"junk line\n"]


@given(
    st.lists(st.sampled_from(_HEADER_PIECES), max_size=40).map(b"".join),
    st.sampled_from([2, 5, 1000]),
)
@settings(max_examples=1500, deadline=None)
def test_header_lines_are_read_as_by_a_split_and_a_match_per_line(block: bytes, max_headers: int) -> None:
    from edgeward.content.mime import ParseLimits, _parse_headers, decode_rfc2047

    anomalies: set[str] = set()
    headers = _parse_headers(block, ParseLimits(max_headers=max_headers), anomalies)
    raw, expected_anomalies = _header_lines_reference(block, max_headers)
    expected = []
    for name, parts in raw:
        value = b" ".join(parts).decode("utf-8", "replace")
        expected.append((name, decode_rfc2047(value) if "=?" in value else value))
    assert headers == expected
    assert anomalies == expected_anomalies


@given(
    st.text(alphabet="verifconmsgalhuxyz д\n", max_size=300),
    st.lists(st.text(alphabet="verifconmsgalhu", min_size=1, max_size=6), min_size=1, max_size=8),
)
@settings(max_examples=800, deadline=None)
def test_hints_are_found_as_by_a_search_for_each(text: str, hints: list[str]) -> None:
    from edgeward.content.phishing import _CREDENTIAL_HINTS, _URGENCY_HINTS, _has_any

    for wanted in (tuple(hints), _CREDENTIAL_HINTS, _URGENCY_HINTS):
        assert _has_any(text, wanted) == any(hint in text for hint in wanted)
