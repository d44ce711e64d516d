"""Reading certificates handed in by an operator: PEM chains with keys, and PKCS#12 files.

Owns the checks an experienced mail administrator would make before letting a certificate
near a listener, and the decision of which of them stop the import and which only warn:

* refused: unreadable files, a wrong password, a key that does not belong to the
  certificate, keys below policy (RSA < 2048, curves other than P-256/384/521), and a
  certificate that has already expired (unless the operator says ``allow_expired``, for
  example to keep a record of it);
* warned: not valid yet (the CA's clock or ours is off), expiring within 30 days, no issuer
  certificate in the file (peers without the intermediate cannot verify), extra certificates
  that are not part of the chain (left out), a CA certificate used as a server certificate,
  an extendedKeyUsage without serverAuth, a SHA-1 signature.

Security: passwords are only passed to ``cryptography`` and never kept or shown; the key is
returned as an object for the store to write with mode 0600.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from edgeward.tls.certs import (
    PrivateKey,
    is_ca,
    is_self_signed,
    key_description,
    load_pem_chain,
    load_private_key,
    order_chain,
    public_key_id,
    supported_key,
)
from edgeward.tls.errors import ExpiredCertificate, InvalidInput, KeyMismatch, WrongPassword

EXPIRY_WARNING = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class ParsedImport:
    """A leaf with its ordered chain; ``key`` is None when a pending request holds it."""

    chain: tuple[x509.Certificate, ...]
    key: PrivateKey | None
    warnings: tuple[str, ...]

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


def parse_pem(
    chain_data: bytes,
    key_data: bytes | None,
    *,
    password: str | bytes | None,
    pending_keys: Collection[str],
    now: datetime,
    allow_expired: bool,
) -> ParsedImport:
    """Parse a PEM chain and key (the key may also sit in the chain file, as many tools write it)."""
    certs = load_pem_chain(chain_data)
    if key_data is None and b"PRIVATE KEY-----" in chain_data:
        key_data = chain_data
    key = load_private_key(key_data, password) if key_data is not None else None
    return _assemble(certs, key, pending_keys=pending_keys, now=now, allow_expired=allow_expired)


def parse_pkcs12(
    data: bytes,
    *,
    password: str | bytes | None,
    pending_keys: Collection[str],
    now: datetime,
    allow_expired: bool,
) -> ParsedImport:
    """Parse a PKCS#12 (PFX) file as exported by Windows, a CA portal or ``openssl pkcs12``."""
    secret = password.encode() if isinstance(password, str) else password
    try:
        bundle = pkcs12.load_pkcs12(data, secret)
    except ValueError as exc:
        # cryptography does not tell a wrong password from a damaged file; say both.
        raise WrongPassword("cannot open the PKCS#12 file: wrong password, or not a PKCS#12 file") from exc
    # Without a key, the certificate is stored as an "additional" one (no localKeyId to pair it).
    leaf = [bundle.cert.certificate] if bundle.cert is not None else []
    certs = [*leaf, *(c.certificate for c in bundle.additional_certs)]
    if not certs:
        raise InvalidInput("the PKCS#12 file holds no certificate")
    key = None if bundle.key is None else supported_key(bundle.key)
    return _assemble(certs, key, pending_keys=pending_keys, now=now, allow_expired=allow_expired)


def _assemble(
    certs: list[x509.Certificate],
    key: PrivateKey | None,
    *,
    pending_keys: Collection[str],
    now: datetime,
    allow_expired: bool,
) -> ParsedImport:
    leaf = _find_leaf(certs, key, pending_keys)
    key_description(leaf.public_key())
    chain = order_chain(leaf, certs)
    warnings = [*_chain_warnings(leaf, chain, certs), *_leaf_warnings(leaf, now, allow_expired)]
    return ParsedImport(chain=tuple(chain), key=key, warnings=tuple(warnings))


def _find_leaf(
    certs: list[x509.Certificate], key: PrivateKey | None, pending_keys: Collection[str]
) -> x509.Certificate:
    if key is not None:
        wanted = public_key_id(key.public_key())
        for cert in certs:
            if _pk_id(cert) == wanted:
                return cert
        raise KeyMismatch("the private key does not belong to any certificate in the file")
    for cert in certs:
        if _pk_id(cert) in pending_keys:
            return cert
    raise InvalidInput(
        "no private key was given and no pending request matches a certificate in the file "
        "(give the key file, or import the CA's answer to a request made with 'cert request')"
    )


def _pk_id(cert: x509.Certificate) -> str:
    return public_key_id(cert.public_key())


def _chain_warnings(
    leaf: x509.Certificate, chain: list[x509.Certificate], certs: list[x509.Certificate]
) -> list[str]:
    warnings: list[str] = []
    subject = leaf.subject.rfc4514_string()
    left_out = len({c.fingerprint(hashes.SHA256()) for c in certs}) - len(chain)
    if left_out > 0:
        warnings.append(f"{left_out} certificate(s) in the file are not in the chain of {subject}; left out")
    if len(chain) == 1 and not is_self_signed(leaf):
        warnings.append(
            f"the file holds no issuer certificate for {subject}: peers that lack "
            f"{leaf.issuer.rfc4514_string()} will fail to verify it (add the intermediate CA)"
        )
    return warnings


def _leaf_warnings(leaf: x509.Certificate, now: datetime, allow_expired: bool) -> list[str]:
    warnings: list[str] = []
    subject = leaf.subject.rfc4514_string()
    not_after = leaf.not_valid_after_utc
    if now >= not_after:
        message = f"certificate {subject} expired on {not_after:%Y-%m-%d}"
        if not allow_expired:
            raise ExpiredCertificate(message + " (import it anyway with allow-expired)")
        warnings.append(message + "; it cannot be bound to a service")
    elif not_after - now <= EXPIRY_WARNING:
        warnings.append(f"certificate {subject} expires in {(not_after - now).days} day(s)")
    if now < leaf.not_valid_before_utc:
        warnings.append(
            f"certificate {subject} is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    if is_ca(leaf):
        warnings.append(f"{subject} is a CA certificate; servers should use an end-entity certificate")
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None and ExtendedKeyUsageOID.SERVER_AUTH not in usages:
        warnings.append(f"{subject} is not for server authentication (no serverAuth in extendedKeyUsage)")
    algorithm = leaf.signature_hash_algorithm
    if algorithm is not None and algorithm.name in {"sha1", "md5"}:
        warnings.append(f"{subject} is signed with {algorithm.name.upper()}, which verifying peers refuse")
    return warnings
