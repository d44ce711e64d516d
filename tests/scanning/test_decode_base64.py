"""The base64 decoder's fast path reads every input as the regular-expression reading did.

The decoder deletes junk with ``bytes.translate`` instead of a regex substitution (much
faster on large attachments); the reference below is the regex version it replaced, and the
two must agree on decoded bytes and on whether the part needed repair, for clean input, junk
anywhere (NUL, 8-bit, '-', '.'), padding in the middle and every white space.
"""

from __future__ import annotations

import base64
import binascii
import random
import re

import pytest

from edgeward.scanning.decode import transfer_decode

_ALPHABET = re.compile(rb"[^A-Za-z0-9+/]")
_OK = re.compile(rb"[A-Za-z0-9+/=\s]*")


def reference(body: bytes) -> tuple[bytes, bool]:
    repaired = _OK.fullmatch(body) is None
    cleaned = _ALPHABET.sub(b"", body)
    extra = len(cleaned) % 4
    if extra == 1:
        cleaned, repaired = cleaned[:-1], True
    elif extra:
        cleaned += b"=" * (4 - extra)
    return binascii.a2b_base64(cleaned), repaired


def bodies() -> list[bytes]:
    rng = random.Random(7)
    out = [b"", b"====", b"\r\n", b"QQ", b"QUJD\x00REVG", b"QU=JD", "QUJD\u00e9".encode()]
    for n in range(300):
        text = bytearray(base64.encodebytes(rng.randbytes(rng.randrange(0, 400))))
        for _ in range(n % 5):  # junk, padding and white space at random places
            text.insert(rng.randrange(len(text) + 1), rng.choice(b"\x00\xff-.=*\t\x0b\x0c \r\n~"))
        out.append(bytes(text))
    return out


@pytest.mark.parametrize("body", bodies())
def test_the_fast_decoder_agrees_with_the_regex_reading(body: bytes) -> None:
    assert transfer_decode(body, "base64") == reference(body)


def test_clean_base64_is_not_repaired_and_junk_is() -> None:
    clean = base64.encodebytes(b"hello world" * 50)
    assert transfer_decode(clean, "base64") == (b"hello world" * 50, False)
    assert transfer_decode(clean[:20] + b"\x00" + clean[20:], "base64") == (b"hello world" * 50, True)
