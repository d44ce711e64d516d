"""Fuzzing the MIME walker of the content classifier (``content.mime``).

Inputs: the shared parser-test corpus (every file whole, and mutated prefixes), generated MIME
trees (nested multiparts with distinct boundaries, message/rfc822 parts, base64 and
quoted-printable leaves, every charset Python knows), and raw bytes. Properties: never raises;
the part count, depth, header count and per-part text stay within ``ParseLimits``; a
generated tree within the limits is read back with exactly its structure and its texts.
"""

from __future__ import annotations

import base64
import binascii
import encodings.aliases
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeward.content.mime import ParsedMessage, ParseLimits, decode_rfc2047, parse_message
from tests.fuzz import seeds
from tests.fuzz.profiles import fuzz_settings

pytestmark = pytest.mark.fuzz

_MESSAGES = seeds.message_seeds()
SMALL = ParseLimits(
    max_message_bytes=20_000, max_text_bytes_per_part=300, max_parts=6, max_depth=3, max_headers=8
)
_CHARSETS = sorted({*encodings.aliases.aliases.values(), *encodings.aliases.aliases})


def _check_bounds(message: ParsedMessage, limits: ParseLimits) -> None:
    assert len(message.structure) <= limits.max_parts
    assert len(message.texts) <= limits.max_parts
    assert len(message.headers) <= limits.max_headers
    for part in message.texts:
        # Decoding never yields more characters than the bytes it was given, bar replacement marks.
        assert len(part.text) <= limits.max_text_bytes_per_part, part.content_type
        assert part.content_type in ("text/plain", "text/html")
    for value in message.structure:
        assert "/" in value
    for ext in message.attachment_exts:
        assert len(ext) <= 10
    for charset in message.charsets:
        assert len(charset) <= 40


def _parse(raw: bytes, limits: ParseLimits) -> ParsedMessage:
    message = parse_message(raw, limits)
    _check_bounds(message, limits)
    return message


@pytest.mark.skipif(not _MESSAGES, reason=seeds.corpus_reason(seeds.PARSER_TESTS))
def test_every_corpus_file() -> None:
    limits = ParseLimits()
    parsed = [_parse(raw, limits) for raw in seeds.corpus_messages()]
    assert sum(bool(m.texts) for m in parsed) > len(parsed) // 3
    for raw in seeds.corpus_messages()[::7]:
        _parse(raw, SMALL)


@pytest.mark.skipif(not _MESSAGES, reason=seeds.corpus_reason(seeds.PARSER_TESTS))
@fuzz_settings(2)
@given(st.data(), st.booleans())
def test_mutated_corpus_messages(data: st.DataObject, small: bool) -> None:
    _parse(data.draw(seeds.mutated(_MESSAGES)), SMALL if small else ParseLimits())


@fuzz_settings(1)
@given(st.binary(max_size=2000))
def test_random_bytes(raw: bytes) -> None:
    _parse(raw, SMALL)
    _parse(raw, ParseLimits())


# --- generated trees ----------------------------------------------------------------------------


@dataclass
class Node:
    ctype: str  # "multipart/..." (children), "message/rfc822" (one child) or a leaf type
    children: list[Node]
    text: str = ""
    cte: str = "7bit"
    charset: str = "utf-8"


_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\r\x00-"), max_size=60).map(
    lambda t: t.replace("\n", " ")
)


def _leaf() -> st.SearchStrategy[Node]:
    return st.builds(
        lambda ctype, text, cte: Node(ctype, [], text, cte),
        st.sampled_from(["text/plain", "text/html", "application/octet-stream"]),
        _TEXT,
        st.sampled_from(["7bit", "base64", "quoted-printable"]),
    )


def _tree() -> st.SearchStrategy[Node]:
    return st.recursive(
        _leaf(),
        lambda inner: st.one_of(
            st.builds(
                Node,
                st.sampled_from(["multipart/mixed", "multipart/alternative", "multipart/related"]),
                st.lists(inner, min_size=1, max_size=3),
            ),
            st.builds(lambda child: Node("message/rfc822", [child]), inner),
        ),
        max_leaves=10,
    )


class _Writer:
    def __init__(self) -> None:
        self.next_id = 0

    def entity(self, node: Node) -> bytes:
        """Header lines (with the empty line) and body of ``node``."""
        if node.ctype.startswith("multipart/"):
            self.next_id += 1
            # "=_N_=" is never a prefix of another: each boundary is found only where it is.
            boundary = f"=_{self.next_id}_="
            head = f'Content-Type: {node.ctype}; boundary="{boundary}"\n\n'.encode()
            body = b"preamble\n"
            for child in node.children:
                body += f"--{boundary}\n".encode() + self.entity(child) + b"\n"
            return head + body + f"--{boundary}--\nepilogue\n".encode()
        if node.ctype == "message/rfc822":
            return b"Content-Type: message/rfc822\n\n" + self.entity(node.children[0])
        raw = node.text.encode("utf-8")
        if node.cte == "base64":
            body = base64.encodebytes(raw)
        elif node.cte == "quoted-printable":
            body = binascii.b2a_qp(raw)
        else:
            body = raw
        head = (
            f"Content-Type: {node.ctype}; charset={node.charset}\nContent-Transfer-Encoding: {node.cte}\n\n"
        )
        return head.encode() + body


def _expected(node: Node, depth: int = 0) -> tuple[list[str], list[tuple[str, str]], int]:
    """(structure, texts, deepest level) of ``node`` as the walker should report them."""
    structure, texts, deepest = [node.ctype], [], depth
    if node.children:
        for child in node.children:
            s, t, d = _expected(child, depth + 1)
            structure += s
            texts += t
            deepest = max(deepest, d)
    elif node.ctype in ("text/plain", "text/html"):
        texts.append((node.ctype, node.text))
    return structure, texts, deepest


@fuzz_settings(2)
@given(_tree(), st.booleans())
def test_generated_trees_read_back(tree: Node, crlf: bool) -> None:
    raw = b"From: a@example.net\nSubject: tree\nMIME-Version: 1.0\n" + _Writer().entity(tree)
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    structure, texts, deepest = _expected(tree)
    limits = ParseLimits()
    message = _parse(raw, limits)
    assert message.structure == structure
    # Leaf bodies end at the line break before the next delimiter; trailing blanks may differ
    # for quoted-printable (RFC 2045 §6.7 (3) lets a decoder drop them).
    assert [(p.content_type, p.text.rstrip("\n ")) for p in message.texts] == [
        (c, t.rstrip("\n ")) for c, t in texts
    ]
    assert not message.anomalies & {"MIME_TOO_MANY_PARTS", "MIME_TOO_DEEP", "MIME_MISSING_BOUNDARY"}
    small = _parse(raw, SMALL)
    if len(structure) > SMALL.max_parts:
        assert "MIME_TOO_MANY_PARTS" in small.anomalies
    if deepest > SMALL.max_depth:
        # Unless the part cap stopped the walk before it reached the deep part.
        assert small.anomalies & {"MIME_TOO_DEEP", "MIME_TOO_MANY_PARTS"}
    if len(structure) <= SMALL.max_parts and deepest <= SMALL.max_depth:
        assert small.structure == structure


@fuzz_settings(1)
@given(
    st.sampled_from(_CHARSETS),
    st.binary(max_size=80),
    st.sampled_from(["7bit", "base64", "quoted-printable"]),
)
def test_any_declared_charset(charset: str, body: bytes, cte: str) -> None:
    """Whatever charset a part or an encoded word names, decoding never raises."""
    encoded = base64.encodebytes(body) if cte == "base64" else body
    raw = (
        f"Subject: =?{charset}?b?{base64.b64encode(body).decode()}?=\n"
        f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {cte}\n\n"
    ).encode() + encoded
    message = _parse(raw, SMALL)
    assert message.structure == ["text/plain"]
    assert len(message.texts) == 1


@fuzz_settings(1)
@given(st.text(max_size=80))
def test_decode_rfc2047_never_raises(value: str) -> None:
    assert isinstance(decode_rfc2047(value), str)
