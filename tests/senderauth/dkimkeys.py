"""Signing keys made in the test run, with the TXT records that publish them (RFC 6376 §3.6.1).

The ``cryptography`` package refuses to generate RSA keys under 1024 bits, which is right for
production and exactly what a test of the verifier's floor needs; the small key is built from
primes found here instead.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


@dataclass(frozen=True)
class SigningKey:
    private: bytes  # what dkimpy's sign wants: PEM for RSA, the base64 seed for Ed25519
    record: str  # the TXT record at <selector>._domainkey.<domain>
    algorithm: bytes


def _rsa_from(key: rsa.RSAPrivateKey) -> SigningKey:
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption())
    der = key.public_key().public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
    return SigningKey(pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode(), b"rsa-sha256")


def rsa_key(bits: int = 2048) -> SigningKey:
    return _rsa_from(rsa.generate_private_key(public_exponent=65537, key_size=bits))


def _probable_prime(bits: int, rng: random.Random) -> int:
    while True:
        n = rng.getrandbits(bits) | (1 << (bits - 1)) | 1
        if n % 65537 == 1:
            continue
        d, s = n - 1, 0
        while d % 2 == 0:
            d, s = d // 2, s + 1
        for _ in range(40):
            x = pow(rng.randrange(2, n - 1), d, n)
            if x in (1, n - 1):
                continue
            for _ in range(s - 1):
                x = pow(x, 2, n)
                if x == n - 1:
                    break
            else:
                break
        else:
            return n


def weak_rsa_key(bits: int = 512, seed: int = 512) -> SigningKey:
    """An RSA key of ``bits`` bits, below what ``cryptography`` will generate."""
    rng = random.Random(seed)
    e = 65537
    while True:
        p, q = _probable_prime(bits // 2, rng), _probable_prime(bits // 2, rng)
        if p != q and (p * q).bit_length() == bits:
            break
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, p * q)
    )
    return _rsa_from(numbers.private_key(unsafe_skip_rsa_key_validation=True))


def ed25519_key() -> SigningKey:
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
    raw = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return SigningKey(
        base64.b64encode(seed), "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode(), b"ed25519-sha256"
    )
