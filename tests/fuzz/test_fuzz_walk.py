"""Fuzzing the scanning walk (``scanning.walk``, ``scanning.archives``).

Inputs: mutated parser-test messages, random bytes, generated MIME trees (the content
walker's generator) and mutated archives inside a message. Properties: never raises and never
reports an internal failure; items, decoded bytes and archive members stay within the bounds;
every leaf of a generated tree within the bounds is read back decoded, in order.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import lzma
import zipfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeward.scanning.archives import ArchiveLimits
from edgeward.scanning.walk import Walk, WalkLimits, walk_message
from tests.fuzz import seeds
from tests.fuzz.profiles import fuzz_settings
from tests.fuzz.test_fuzz_mime import Node, _tree, _Writer

pytestmark = pytest.mark.fuzz

_MESSAGES = seeds.message_seeds()
SMALL = WalkLimits(max_depth=3, max_parts=6, max_decoded_bytes=4000,
                   archive=ArchiveLimits(max_depth=2, max_members=5, max_expanded_bytes=8000))  # fmt: skip


def _walk(raw: bytes, limits: WalkLimits) -> Walk:
    walk = walk_message(raw, limits)
    assert not any(d.startswith("walk failed") for _, d in walk.findings), walk.findings
    mime = [i for i in walk.items if "!" not in i.path]
    members = [i for i in walk.items if "!" in i.path]
    assert sum(len(i.data) for i in mime) <= limits.max_decoded_bytes
    assert sum(len(i.data) for i in members) <= limits.archive.max_expanded_bytes
    assert len(members) <= limits.archive.max_members
    for item in walk.items:
        assert "\x00" not in item.path and "\u202e" not in item.path and "\n" not in item.name
    return walk


@pytest.mark.skipif(not _MESSAGES, reason=seeds.corpus_reason(seeds.PARSER_TESTS))
@fuzz_settings(0.5)
@given(st.data(), st.booleans())
def test_mutated_corpus_messages(data: st.DataObject, small: bool) -> None:
    _walk(data.draw(seeds.mutated(_MESSAGES)), SMALL if small else WalkLimits())


@fuzz_settings(1)
@given(st.binary(max_size=2000))
def test_random_bytes(raw: bytes) -> None:
    _walk(raw, SMALL)
    _walk(raw, WalkLimits())


def _leaves(node: Node) -> list[Node]:
    if not node.children:
        return [node]
    return [leaf for child in node.children for leaf in _leaves(child)]


@fuzz_settings(0.5)
@given(_tree(), st.booleans())
def test_generated_trees_read_back(tree: Node, crlf: bool) -> None:
    raw = b"From: a@example.net\nSubject: tree\nMIME-Version: 1.0\n" + _Writer().entity(tree)
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    walk = _walk(raw, WalkLimits())
    assert not walk.cut
    expected = [leaf.text.encode("utf-8").rstrip(b"\n ") for leaf in _leaves(tree)]
    got = [i.data.replace(b"\r\n", b"\n").rstrip(b"\n ") for i in walk.items]
    assert got == expected


def _archive(kind: str, payload: bytes) -> bytes:
    if kind == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("a/b.txt", payload)
            archive.writestr("c.bin", payload[::-1])
        return buffer.getvalue()
    packer = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[kind]
    return packer(payload)


@fuzz_settings(0.5)
@given(st.sampled_from(["zip", "gz", "bz2", "xz"]), st.binary(max_size=3000), st.data())
def test_mutated_archives(kind: str, payload: bytes, data: st.DataObject) -> None:
    archive = data.draw(seeds.mutated([_archive(kind, payload)]))
    body = base64.encodebytes(archive).decode()
    raw = (
        "From: a@example.net\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B\n\n"
        f"--B\nContent-Type: application/octet-stream; name=x.{kind}\nContent-Transfer-Encoding: base64\n\n"
        f"{body}\n--B--\n"
    ).encode()
    _walk(raw, SMALL)
    _walk(raw, WalkLimits())
