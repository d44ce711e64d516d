"""Making DKIM signatures (RFC 6376 §5) and the keys and DNS records they need.

:func:`sign` adds one ``DKIM-Signature`` made by dkimpy (``relaxed/relaxed``, RSA-SHA256) on
top of a message, after removing the signatures of the same ``d=`` already on it (see
``config/dkim_sign.py`` for why). :func:`generate_key` makes an RSA key as PEM (PKCS #1, as
opendkim-genkey writes it), :func:`txt_record` the ``v=DKIM1`` record for its public half, cut
into the 255-octet strings of a TXT record.

Security: the header block is read as bytes and only whole ``DKIM-Signature`` fields are
dropped; no other field of the mail is re-emitted, so a hostile header cannot be refolded into
new fields (CVE-2024-6923).
"""

from __future__ import annotations

import base64
import re

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from edgeward.headers import header_end

__all__ = ["DkimSignError", "generate_key", "public_key_b64", "sign", "strip_signatures", "txt_record"]

_FIELD_START = re.compile(rb"(?m)^(?=[^ \t\r\n])")
_D_TAG = re.compile(rb"(?:^|;)\s*d\s*=\s*([^;\s]+)", re.IGNORECASE)


class DkimSignError(Exception):
    """The message could not be signed (a key dkimpy refuses, a message without From)."""


def strip_signatures(data: bytes, domain: str) -> bytes:
    """``data`` without the ``DKIM-Signature`` fields whose ``d=`` is ``domain``."""
    end = header_end(data)
    head, body = data[:end], data[end:]
    if b"dkim-signature" not in head.lower():
        return data
    fields = _FIELD_START.split(head)
    kept = []
    for field in fields:
        name, _, value = field.partition(b":")
        if name.strip().lower() == b"dkim-signature":
            unfolded = re.sub(rb"\r?\n[ \t]+", b" ", value)
            match = _D_TAG.search(unfolded)
            if match and match.group(1).decode("ascii", "replace").lower().rstrip(".") == domain:
                continue
        kept.append(field)
    return b"".join(kept) + body


def sign(data: bytes, *, selector: str, domain: str, key: bytes, headers: tuple[str, ...]) -> bytes:
    """``data`` with our signature on top, the old signatures of ``domain`` gone."""
    data = strip_signatures(data, domain)
    try:
        field = dkim.sign(
            data, selector.encode("ascii"), domain.encode("ascii"), key,
            canonicalize=(b"relaxed", b"relaxed"), include_headers=[h.encode("ascii") for h in headers],
        )  # fmt: skip
    except (dkim.DKIMException, ValueError) as exc:
        raise DkimSignError(str(exc)) from exc
    if not field:
        raise DkimSignError("dkimpy made no signature")
    return bytes(field) + data


def generate_key(bits: int = 2048) -> bytes:
    """A new RSA private key as PEM (PKCS #1)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def public_key_b64(private_pem: bytes) -> str:
    """The ``p=`` value for a private key: its public half, DER SubjectPublicKeyInfo in base64."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimSignError("the key is not an RSA key")
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def txt_record(private_pem: bytes) -> tuple[str, ...]:
    """The TXT record's strings (each at most 255 octets) for a key: ``v=DKIM1; k=rsa; p=...``."""
    text = f"v=DKIM1; k=rsa; p={public_key_b64(private_pem)}"
    return tuple(text[i : i + 255] for i in range(0, len(text), 255))
