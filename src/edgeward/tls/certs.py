"""X.509 building blocks: keys, self-signed certificates, requests, and what a certificate says.

Owns: the key policy (RSA 2048/3072/4096, ECDSA P-256/P-384/P-521), name validation, building
self-signed certificates and certificate signing requests, thumbprints, loading and ordering
PEM chains, and ``CertInfo``, the description of a certificate shown by ``cert list``. No
function here touches the file system; ``store`` does that.

Names follow Exchange's setup certificate: the subject CN is the FQDN and the SANs hold the
FQDN and the short host name. Requests for a CA leave the short name out, because public CAs
refuse internal names (CA/Browser Forum Baseline Requirements, since 2015).

Security: keys come from ``cryptography`` (OpenSSL's CSPRNG); serial numbers are 159 random
bits (RFC 5280 §4.1.2.2, CA/B BR §7.1); signatures use SHA-256. Certificates are end-entity
only (basicConstraints CA=false, critical) so a leaked key cannot sign other certificates.
Key material is only ever returned as PEM bytes to the store; nothing here logs or formats it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgeward.tls.errors import InvalidInput, WeakKey, WrongPassword

KeyType = Literal["rsa", "ec"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

RSA_SIZES = (2048, 3072, 4096)
EC_CURVES = {"secp256r1": 256, "secp384r1": 384, "secp521r1": 521}
MAX_DAYS = 3650
# Peers' clocks drift; a certificate valid "from now" would be refused by a peer a minute behind.
BACKDATE = timedelta(minutes=10)
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


# --- names -------------------------------------------------------------------------------------


def normalise_hostname(name: str, *, allow_wildcard: bool = False) -> str:
    """Return ``name`` lower-cased without a trailing dot, or raise ``InvalidInput``.

    Only LDH host names (RFC 1123 §2.1) are accepted; internationalised names must be given in
    their A-label (``xn--``) form so that what is certified is exactly what peers compare.
    """
    host = name.strip().lower().removesuffix(".")
    if not host or len(host) > 253:
        raise InvalidInput(f"not a host name: {name!r}")
    labels = host.split(".")
    if allow_wildcard and labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]
    if not all(_LABEL.match(label) for label in labels):
        raise InvalidInput(f"not a host name: {name!r} (use letters, digits and '-'; A-labels for IDNs)")
    if _is_ip(host):
        raise InvalidInput(f"{name!r} is an IP address, not a host name")
    return host


def host_names(hostname: str) -> tuple[str, str]:
    """``(fqdn, short)`` for a host name; ``short`` equals ``fqdn`` for a single-label name."""
    fqdn = normalise_hostname(hostname)
    if len(fqdn) > 64:
        # RFC 5280 upper bound for a CommonName; certificates without a CN are poorly supported.
        raise InvalidInput(f"host name {fqdn!r} is longer than 64 characters and cannot be a subject CN")
    return fqdn, fqdn.split(".", 1)[0]


def san_list(fqdn: str, extra: Iterable[str], *, short: str | None) -> tuple[str, ...]:
    """The SAN names in order (FQDN, short name, extras), without duplicates."""
    names: list[str] = [fqdn]
    if short is not None:
        names.append(short)
    for raw in extra:
        name = _normalise_san(raw)
        if name not in names:
            names.append(name)
    return tuple(names)


def _normalise_san(raw: str) -> str:
    text = raw.strip()
    if _is_ip(text):
        return str(ipaddress.ip_address(text))
    return normalise_hostname(text, allow_wildcard=True)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _general_names(names: Sequence[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        if _is_ip(name):
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        else:
            result.append(x509.DNSName(name))
    return result


# --- keys --------------------------------------------------------------------------------------


def generate_key(key_type: str = "rsa", key_size: int = 2048) -> PrivateKey:
    """A new private key. ``key_size`` applies to RSA only; ``ec`` is always P-256."""
    if key_type == "rsa":
        if key_size not in RSA_SIZES:
            raise WeakKey(f"RSA key size must be one of {', '.join(map(str, RSA_SIZES))}, not {key_size}")
        return rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    if key_type == "ec":
        # P-256 is what every TLS stack supports; ECDSA with it is as strong as RSA-3072.
        return ec.generate_private_key(ec.SECP256R1())
    raise InvalidInput(f"key type must be 'rsa' or 'ec', not {key_type!r}")


def key_description(public_key: object) -> tuple[KeyType, int]:
    """``(key_type, bits)`` of a public key, or ``WeakKey`` if the policy does not accept it."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < RSA_SIZES[0]:
            raise WeakKey(f"RSA key of {public_key.key_size} bits is below the minimum of {RSA_SIZES[0]}")
        return "rsa", public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        bits = EC_CURVES.get(public_key.curve.name)
        if bits is None:
            raise WeakKey(f"elliptic curve {public_key.curve.name} is not supported (use P-256/384/521)")
        return "ec", bits
    raise WeakKey(f"key type {type(public_key).__name__} is not supported for TLS (use RSA or ECDSA)")


def request_to_pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def key_to_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the gateway must start unattended; the file mode protects it."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(data: bytes, password: str | bytes | None = None) -> PrivateKey:
    """Parse a PEM or DER private key; ``WrongPassword`` if it is encrypted and cannot be opened."""
    secret = password.encode() if isinstance(password, str) else password
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, secret)
        else:
            key = serialization.load_der_private_key(data, secret)
    except TypeError as exc:
        # cryptography raises TypeError when a password is missing or given for a plain key.
        raise WrongPassword("the private key is encrypted: give its password") from exc
    except ValueError as exc:
        if b"ENCRYPTED" in data:
            raise WrongPassword("wrong password for the encrypted private key") from exc
        raise InvalidInput("the key file does not hold a readable private key") from exc
    return supported_key(key)


def supported_key(key: object) -> PrivateKey:
    """``key`` narrowed to the types the policy accepts, or ``WeakKey``."""
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise WeakKey(f"key type {type(key).__name__} is not supported for TLS (use RSA or ECDSA)")
    key_description(key.public_key())
    return key


def public_key_id(public_key: CertificatePublicKeyTypes) -> str:
    """SHA-256 of the SubjectPublicKeyInfo: matches keys, requests and certificates."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return digest.finalize().hex()


# --- certificates and requests -----------------------------------------------------------------


def make_self_signed(
    hostname: str,
    *,
    extra_sans: Iterable[str] = (),
    key_type: str = "rsa",
    key_size: int = 2048,
    days: int = 365,
    now: datetime | None = None,
) -> tuple[bytes, bytes]:
    """A self-signed server certificate and its key, as ``(cert_pem, key_pem)``.

    Subject CN = FQDN; SANs = FQDN, short host name, then ``extra_sans`` (host names, ``*.``
    wildcards or IP addresses).
    """
    fqdn, short = host_names(hostname)
    names = san_list(fqdn, extra_sans, short=short)
    key = generate_key(key_type, key_size)
    cert = build_self_signed(key, fqdn, names, days=days, now=now)
    return cert.public_bytes(serialization.Encoding.PEM), key_to_pem(key)


def build_self_signed(
    key: PrivateKey, common_name: str, names: Sequence[str], *, days: int, now: datetime | None
) -> x509.Certificate:
    """Sign an end-entity certificate for ``names`` with its own ``key``."""
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"validity must be between 1 and {MAX_DAYS} days, not {days}")
    start = (now or datetime.now(UTC)) - BACKDATE
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + BACKDATE + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key), critical=True)
        .add_extension(_server_eku(), critical=False)
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def build_request(key: PrivateKey, common_name: str, names: Sequence[str]) -> x509.CertificateSigningRequest:
    """A CSR asking for a server certificate for ``names``; CAs copy or override the extensions."""
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key), critical=True)
        .add_extension(_server_eku(), critical=False)
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def _key_usage(key: PrivateKey) -> x509.KeyUsage:
    # keyEncipherment only means something for RSA key transport; RFC 5480 §3 does not allow it
    # for ECDSA keys, so EC certificates carry digitalSignature alone.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _server_eku() -> x509.ExtendedKeyUsage:
    # clientAuth too: the same certificate authenticates this gateway when it connects to a
    # partner over mutual TLS, as Exchange's Edge certificate does.
    return x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, upper-case hex (the form ``cert list`` shows)."""
    return cert.fingerprint(hashes.SHA256()).hex().upper()


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    """All certificates in a PEM file, or ``InvalidInput`` if there is none."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise InvalidInput("the file holds no readable PEM certificate") from exc
    return certs


def chain_to_pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True if ``issuer``'s key signed ``cert`` (name and signature both checked)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    return issued_by(cert, cert)


def order_chain(leaf: x509.Certificate, others: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    """``leaf`` followed by its issuers in order, as TLS sends them (RFC 8446 §4.4.2).

    Certificates that are not part of the leaf's chain are left out; the caller can compare
    lengths to warn about them.
    """
    pool = [cert for cert in others if cert != leaf]
    chain = [leaf]
    current = leaf
    while not is_self_signed(current):
        issuer = next((cand for cand in pool if issued_by(current, cand)), None)
        if issuer is None:
            break
        chain.append(issuer)
        pool.remove(issuer)
        current = issuer
    return chain


def san_names(cert: x509.Certificate | x509.CertificateSigningRequest) -> tuple[str, ...]:
    """DNS names and IP addresses from the subjectAltName extension of a certificate or request."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = ext.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return (*dns, *ips)


def common_name(cert: x509.Certificate) -> str | None:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else None


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False
