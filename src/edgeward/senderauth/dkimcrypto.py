"""dkimpy's RSA signature check, with its byte/integer conversions done in C.

dkimpy turns the signature into an integer, and the result of the RSA operation back into
bytes, one byte per turn of a Python loop (``dkim.crypto.str2int`` and ``int2str``, the latter
twice): about 770 turns for one 2048-bit signature, 3 to 4 % of the receiving process's CPU on
signed mail (py-spy under ``bench/antispam_bench.py``). :func:`verify` is the same
computation as ``dkim.crypto.RSASSA_PKCS1_v1_5_verify`` (RFC 8017 §8.2.2: ``s^e mod n``
compared with the EMSA-PKCS1-v1_5 encoding of the digest, dkimpy's own encoder) with
``int.from_bytes`` and ``int.to_bytes``; :func:`install` puts it where dkimpy's verifier (DKIM
and ARC alike) looks it up. ``tests/senderauth/test_dkimcrypto.py`` checks that both answer
alike on valid, altered and malformed signatures.
"""

from __future__ import annotations

from typing import Any

import dkim as dkimpy
from dkim.crypto import EMSA_PKCS1_v1_5_encode

__all__ = ["install", "verify"]


def verify(hash: Any, signature: bytes, public_key: dict[str, int]) -> bool:
    """True if ``signature`` is ``hash`` signed by ``public_key`` (dkimpy's parsed key)."""
    modulus = public_key["modulus"]
    length = (modulus.bit_length() + 7) // 8  # len(int2str(modulus)): its bytes, no leading zero
    encoded = EMSA_PKCS1_v1_5_encode(hash, length)
    signed = pow(int.from_bytes(signature, "big"), public_key["publicExponent"], modulus)
    return bool(encoded == signed.to_bytes(length, "big"))


def install() -> None:
    """Make dkimpy's signature checks use :func:`verify`."""
    dkimpy.RSASSA_PKCS1_v1_5_verify = verify
