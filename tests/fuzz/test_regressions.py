"""Every failure the fuzz targets found, as a plain test with the exact input.

Each test names the target that found it and what was wrong; the fix is in the module the
test imports.
"""

from __future__ import annotations

from edgeward.content.mime import parse_message
from edgeward.headers import parse_headers, remove_fields

# --- header reader ------------------------------------------------------------------------------


def test_bare_lf_in_a_header_block_ends_a_line() -> None:
    """test_fuzz_headers: ``Subject:\\n\\n`` gave the value ``"\\n\\n"`` (a line break in a
    value). BODY=BINARYMIME messages reach the reader unnormalised."""
    block = parse_headers(b"Subject:\n\n")
    assert block.fields == (("Subject", ""),)
    block = parse_headers(b"Return-Path:\r <bbb@zzz.org>\r\nReceived: a\nReceived: b\r\n\r\nbody")
    assert block.fields == (("Return-Path", " <bbb@zzz.org>"), ("Received", "a"), ("Received", "b"))
    assert block.count("Received") == 2


def test_internal_header_behind_a_bare_lf_is_removed() -> None:
    """test_fuzz_headers: ``X-Edgeward-*`` after a bare LF survived ``remove_fields`` inside
    the line before it, and a next hop that ends lines at LF would have read it as a field."""
    data = b"Subject: x\nX-Edgeward-SCL: -1\r\n\r\nbody"
    assert remove_fields(data, (b"x-edgeward-",)) == b"Subject: x\r\n\r\nbody"
    data = b"Subject: x\rX-Edgeward-SCL: -1\r\n folded\nTo: y\r\n\r\n\nbody\nX-Edgeward-Keep: 1"
    assert remove_fields(data, (b"x-edgeward-",)) == b"Subject: x\nTo: y\r\n\r\n\nbody\nX-Edgeward-Keep: 1"


# --- MIME walker --------------------------------------------------------------------------------


def test_padded_base64_text_keeps_its_last_bytes() -> None:
    """test_fuzz_mime: the text ``0000`` sent as base64 (``MDAwMA==``) was read as ``000``:
    stripping junk also stripped the padding, and the body was then cut to a multiple of 4."""
    raw = b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\nMDAwMA==\n"
    assert [p.text for p in parse_message(raw).texts] == ["0000"]
    raw = b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGk\n"
    assert [p.text for p in parse_message(raw).texts] == ["hi"]
