"""The RSA check dkimpy is given answers as dkimpy's own on valid, altered and odd signatures."""

from __future__ import annotations

import hashlib

import dkim as dkimpy
import dkim.crypto
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from edgeward.senderauth import dkimcrypto


def _key(bits: int) -> tuple[rsa.RSAPrivateKey, dict[str, int]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    numbers = private.public_key().public_numbers()
    return private, {"modulus": numbers.n, "publicExponent": numbers.e}


def test_dkimpy_is_given_the_fast_check() -> None:
    assert dkimpy.RSASSA_PKCS1_v1_5_verify is dkimcrypto.verify


def test_answers_as_dkimpy_does() -> None:
    for bits in (1024, 2048, 3072):
        private, public = _key(bits)
        for algorithm, hasher in ((hashes.SHA256(), hashlib.sha256), (hashes.SHA1(), hashlib.sha1)):
            message = f"signed text of a {bits}-bit key".encode()
            good = private.sign(message, padding.PKCS1v15(), algorithm)
            altered = bytes([good[0] ^ 1]) + good[1:]
            candidates = [good, altered, good[:-1], b"\x00" + good, b"", b"\x01" * len(good)]
            for signature in candidates:
                for text in (message, message + b"!"):
                    expected = dkim.crypto.RSASSA_PKCS1_v1_5_verify(hasher(text), signature, public)
                    assert dkimcrypto.verify(hasher(text), signature, public) is expected
            assert dkimcrypto.verify(hasher(message), good, public)
