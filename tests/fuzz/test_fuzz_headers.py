"""Fuzzing the bounded header reader (``edgeward.headers``).

Inputs: the shared corpus messages (CRLF-normalised, as the gateway holds them) mutated,
generated header blocks (folded fields, bad names, stray continuations, 8-bit values), and raw
bytes. Properties: never raises; never returns more fields than ``max_fields``; the body offset
is where ``header_end`` says; every name is RFC 5322 ftext and no value holds a line break;
``remove_fields`` leaves the body byte for byte and no field it was asked to drop behind.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeward.headers import HeaderBlock, header_end, parse_headers, remove_fields, sanitize
from tests.fuzz import seeds
from tests.fuzz.profiles import fuzz_settings

pytestmark = pytest.mark.fuzz

_FTEXT = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")
_LINE = re.compile(rb"\r\n|\r|\n")
_MESSAGES = tuple(_LINE.sub(b"\r\n", m) for m in seeds.message_seeds())
_PREFIXES = (b"x-edgeward-", b"received", b"x-")


def _check_block(data: bytes, block: HeaderBlock, max_fields: int) -> None:
    assert len(block.fields) <= max_fields
    assert block.body_offset == header_end(data)
    assert 0 <= block.body_offset <= len(data)
    for name, value in block.fields:
        assert _FTEXT.match(name), name
        assert "\r" not in value and "\n" not in value, value
    assert block.malformed >= 0


def _check_removal(data: bytes) -> None:
    out = remove_fields(data, _PREFIXES)
    body = data[header_end(data) :]
    assert out.endswith(body)
    head = data[: header_end(data)]
    if head.count(b"\r") == head.count(b"\n") == head.count(b"\r\n"):
        # Without bare line ends no empty line can come first once fields are dropped. (With
        # them the block is ambiguous already: "\rX-A: 1" is an empty header to a reader that
        # ends lines at CR, and stays so.)
        assert header_end(out) == len(out) - len(body), (data, out)
    for name, _ in parse_headers(out).fields:
        assert not name.lower().encode().startswith(_PREFIXES), (name, out)
    # Read as a lenient next hop would, ending lines at a bare LF or CR too.
    for line in _LINE.split(out[: header_end(out)]):
        assert not (line.lower().startswith(_PREFIXES) and b":" in line), (line, out)


_NAME = st.one_of(
    st.sampled_from(["Subject", "Received", "X-Edgeward-Score", "x-edgeward-a", "From", "To", "X-Spam"]),
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"), min_size=1, max_size=12
    ),
    st.text(max_size=6),
)
_VALUE = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@st.composite
def _header_block(draw: st.DrawFn) -> bytes:
    lines: list[bytes] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["field", "field", "fold", "junk", "space-name"]))
        if kind == "field":
            lines.append(draw(_NAME).encode("utf-8", "surrogatepass") + b":" + draw(_VALUE))
        elif kind == "fold":
            lines.append(draw(st.sampled_from([b" ", b"\t", b"  "])) + draw(_VALUE))
        elif kind == "space-name":
            lines.append(draw(_NAME).encode("utf-8", "surrogatepass") + b" \t: " + draw(_VALUE))
        else:
            lines.append(draw(_VALUE))
    sep = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
    end = draw(st.sampled_from([b"\r\n\r\n", b"\r\n", b"", b"\n\n"]))
    return sep.join(lines) + end + draw(st.binary(max_size=40))


@fuzz_settings(3)
@given(_header_block(), st.integers(1, 8))
def test_generated_header_blocks(data: bytes, max_fields: int) -> None:
    _check_block(data, parse_headers(data, max_fields), max_fields)
    _check_block(data, parse_headers(data), 10000)
    _check_removal(data)


@fuzz_settings(2)
@given(st.binary(max_size=500), st.integers(1, 10000))
def test_random_bytes(data: bytes, max_fields: int) -> None:
    _check_block(data, parse_headers(data, max_fields), max_fields)
    _check_removal(data)


@pytest.mark.skipif(not _MESSAGES, reason=seeds.corpus_reason(seeds.PARSER_TESTS))
@fuzz_settings(2)
@given(st.data(), st.integers(1, 50))
def test_mutated_corpus_messages(data: st.DataObject, max_fields: int) -> None:
    message = data.draw(seeds.mutated(_MESSAGES))
    _check_block(message, parse_headers(message, max_fields), max_fields)
    _check_removal(message)


@pytest.mark.skipif(not _MESSAGES, reason=seeds.corpus_reason(seeds.PARSER_TESTS))
def test_every_corpus_message() -> None:
    read = 0
    for message in (_LINE.sub(b"\r\n", m) for m in seeds.corpus_messages()):
        block = parse_headers(message)
        _check_block(message, block, 10000)
        _check_removal(message)
        read += bool(block.fields)
    assert read > len(_MESSAGES) // 2


@fuzz_settings(1)
@given(st.text(), st.integers(0, 300))
def test_sanitize_gives_one_bounded_printable_line(text: str, limit: int) -> None:
    clean = sanitize(text, limit)
    assert len(clean) <= limit
    assert clean.isprintable() and "\r" not in clean and "\n" not in clean
    # Character for character what the loop over every character gave, fast path or not.
    assert clean == "".join(ch if ch.isprintable() and ch not in "\r\n" else "?" for ch in text)[:limit]
