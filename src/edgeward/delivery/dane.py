"""DANE for outbound SMTP (RFC 7672, on RFC 6698 and RFC 7671): TLSA policy and certificate matching.

This module owns the sender's half of DANE. :func:`lookup` decides whether DANE applies to
one MX host (§2.2): only when the MX answer, the host's address records and its TLSA RRset
are all DNSSEC-authenticated. :func:`usable` keeps the records SMTP may use (§3.1), and
:func:`verify` checks the chain a server presented against them: DANE-EE(3) by the leaf's
certificate or key alone (§3.1.1), DANE-TA(2) by a trust anchor in the chain, the signatures
and validity of the path up to it and the server's name (§3.1.2, §3.2). What the resulting
policy means for one attempt (TLS mandatory, PKIX not consulted) is decided in
``edgeward.delivery.tlspolicy``; :func:`peer_chain` fetches what the server sent.

Security: DANE's records are only as trustworthy as the AD flag of the resolver they came
from (see ``edgeward.net.dns``). A transient DNS failure, including the SERVFAIL a validating
resolver gives for bogus data, propagates as a transient :class:`ResolverError`, so the
caller defers instead of delivering with less protection than the domain asked for. PKIX
usages 0 and 1 are never used (§3.1.3): they would make delivery depend on the local CA
store. Certificates are parsed with ``cryptography`` and every chain is walked with a depth
limit; nothing from a certificate is trusted before its signature has been checked.
"""

from __future__ import annotations

import _ssl
import hashlib
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key
from cryptography.x509.oid import NameOID

from edgeward.net.dns import TlsaAnswer, TlsaRecord

__all__ = [
    "DanePolicy",
    "DaneResolver",
    "TlsaRecord",
    "lookup",
    "peer_chain",
    "usable",
    "verify",
]

DANE_TA = 2
DANE_EE = 3
_MAX_DEPTH = 10  # certificates between the leaf and its trust anchor, as OpenSSL allows by default


class DaneResolver(Protocol):
    """The DNSSEC-aware lookups DANE needs; :class:`edgeward.net.dns.DnsResolver` provides them."""

    async def mx_secure(self, domain: str) -> bool: ...

    async def host_secure(self, host: str) -> bool: ...

    async def tlsa(self, host: str, port: int) -> TlsaAnswer: ...


@dataclass(frozen=True, slots=True)
class DanePolicy:
    """What DANE demands of one MX host.

    ``none``: DANE does not apply, other policies decide. ``authenticate``: TLS is mandatory and
    the chain must pass :func:`verify` against ``records``. ``encrypt``: a secure TLSA RRset
    exists but none of its records is usable, so TLS is mandatory without authentication
    (RFC 7672 §2.2).
    """

    records: tuple[TlsaRecord, ...]
    state: Literal["none", "authenticate", "encrypt"]


async def lookup(
    resolver: DaneResolver, domain: str, mx_host: str, port: int, *, mx_secure: bool | None = None
) -> DanePolicy:
    """The DANE policy for delivering mail for ``domain`` to ``mx_host``:``port``.

    ``mx_secure`` is what :meth:`DaneResolver.mx_secure` said of ``domain``, for a caller that
    asked once for all the MX hosts of a delivery; None asks here. Raises a transient
    :class:`~edgeward.ports.ResolverError` when DNS fails or the data is bogus; the caller then
    defers (RFC 7672 §2.1.1), never falls back to clear text.
    """
    none = DanePolicy((), "none")
    # §2.2.1: an insecure MX RRset could have been forged to point anywhere, so TLSA records
    # found at its target prove nothing.
    if mx_secure is None:
        mx_secure = await resolver.mx_secure(domain)
    if not mx_secure:
        return none
    # §2.2.2: TLSA records are looked up only for MX hosts whose addresses are secure.
    if not await resolver.host_secure(mx_host):
        return none
    answer = await resolver.tlsa(mx_host, port)
    if not answer.secure or not answer.records:
        return none
    records = usable(answer.records)
    return DanePolicy(records, "authenticate") if records else DanePolicy(answer.records, "encrypt")


def usable(records: Iterable[TlsaRecord]) -> tuple[TlsaRecord, ...]:
    """The records SMTP may use (RFC 7672 §3.1): DANE-TA(2) or DANE-EE(3), known selector and type."""
    return tuple(
        r for r in records if r.usage in (DANE_TA, DANE_EE) and r.selector in (0, 1) and r.mtype in (0, 1, 2)
    )


def verify(
    records: Sequence[TlsaRecord],
    chain: Sequence[bytes],
    names: Sequence[str],
    *,
    now: datetime | None = None,
) -> str | None:
    """None when ``chain`` (DER, leaf first, as the server sent it) is authenticated by ``records``.

    Otherwise a short reason for logs and the deferral text. ``names`` are the reference
    identifiers for DANE-TA(2): the MX host name and the next-hop domain (RFC 7672 §3.2.2).
    """
    candidates = usable(records)
    if not candidates:
        return "no usable TLSA records"
    if not chain:
        return "the server sent no certificate"
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError:
        return "the server sent a certificate that cannot be parsed"
    leaf = certs[0]
    # §3.1.1: DANE-EE binds the key itself; names and dates do not matter.
    if any(_matches(r, leaf) for r in candidates if r.usage == DANE_EE):
        return None
    anchors = [r for r in candidates if r.usage == DANE_TA]
    if not anchors:
        return "no DANE-EE record matches the server certificate"
    path = _path_to_anchor(certs, anchors)
    if path is None:
        return "the certificate chain does not lead to a DANE-TA trust anchor"
    when = now or datetime.now(UTC)
    # The trust anchor's own dates are not checked: DNSSEC vouches for it, as for a DANE-EE key.
    # The certificates it vouches for must be current.
    for cert in path:
        if when < cert.not_valid_before_utc:
            return f"certificate {_subject(cert)} is not yet valid"
        if when > cert.not_valid_after_utc:
            return f"certificate {_subject(cert)} expired {cert.not_valid_after_utc:%Y-%m-%d}"
    wanted = [n.rstrip(".").lower() for n in names if n]
    presented = _dns_names(leaf)
    if not any(_name_matches(pattern, name) for pattern in presented for name in wanted):
        return f"certificate names {', '.join(presented) or 'nothing'}, not {' or '.join(wanted)}"
    return None


def peer_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    """The DER certificates the server sent, leaf first.

    The standard library exposes the chain only from Python 3.13 (``get_unverified_chain``);
    3.11 and 3.12 have the same method on the private ``_sslobj``, returning objects with
    ``public_bytes``. DANE-TA needs the intermediates and the trust anchor from the chain, as
    the client does not know them; when neither accessor exists the leaf alone is returned,
    which still serves DANE-EE.
    """
    chain: Any = None
    public = getattr(ssl_object, "get_unverified_chain", None)
    if callable(public):
        chain = public()
    else:
        private = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
        if callable(private):
            chain = private()
    if chain:
        out: list[bytes] = []
        for cert in chain:
            if isinstance(cert, bytes):
                out.append(cert)
            else:
                out.append(bytes(cert.public_bytes(_ssl.ENCODING_DER)))  # an _ssl.Certificate
        return out
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _matches(record: TlsaRecord, cert: x509.Certificate) -> bool:
    if record.selector == 0:
        selected = cert.public_bytes(Encoding.DER)
    else:
        selected = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return _digest(record.mtype, selected) == record.data


def _digest(mtype: int, data: bytes) -> bytes:
    if mtype == 1:
        return hashlib.sha256(data).digest()
    if mtype == 2:
        return hashlib.sha512(data).digest()
    return data


def _path_to_anchor(
    certs: list[x509.Certificate], anchors: list[TlsaRecord]
) -> list[x509.Certificate] | None:
    """The certificates from the leaf up to, not including, a matching trust anchor.

    Servers must send the trust anchor in their chain (RFC 7672 §3.1.2), but possibly out of
    order and with extra certificates, so the path is built by signature, not by position. The
    leaf is never its own trust anchor: a key that vouches for itself is DANE-EE's job. A
    DANE-TA SPKI Full(0) record is the anchor's key itself (RFC 7671 §5.2.2), which may sign
    the last certificate sent without its certificate being sent.
    """
    path = [certs[0]]
    pool = certs[1:]
    bare_keys = [r.data for r in anchors if r.selector == 1 and r.mtype == 0]
    while len(path) <= _MAX_DEPTH:
        child = path[-1]
        for key in bare_keys:
            if _signed_by_key(child, key):
                return path
        issuer = next((c for c in pool if c not in path and _issued(child, c, len(path) - 1)), None)
        if issuer is None:
            return None
        if any(_matches(r, issuer) for r in anchors):
            return path
        path.append(issuer)
    return None


def _issued(child: x509.Certificate, issuer: x509.Certificate, below: int) -> bool:
    """Whether ``issuer`` is a CA that signed ``child``, with ``below`` CAs between it and the leaf."""
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca or (constraints.path_length is not None and below > constraints.path_length):
        return False
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        pass
    else:
        if not usage.key_cert_sign:
            return False
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _signed_by_key(cert: x509.Certificate, spki: bytes) -> bool:
    """Whether the public key ``spki`` (DER SubjectPublicKeyInfo) made the signature on ``cert``."""
    try:
        key = load_der_public_key(spki)
        params = cert.signature_algorithm_parameters
        hash_algorithm = cert.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey) and isinstance(params, padding.PSS | padding.PKCS1v15):
            if hash_algorithm is None:
                return False
            key.verify(cert.signature, cert.tbs_certificate_bytes, params, hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
            key.verify(cert.signature, cert.tbs_certificate_bytes, params)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey) and params is None:
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _subject(cert: x509.Certificate) -> str:
    names = _dns_names(cert)
    return names[0] if names else cert.subject.rfc4514_string()


def _dns_names(cert: x509.Certificate) -> list[str]:
    """The DNS-IDs of ``cert``; the CN only when there are none (RFC 6125 §6.4.4)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    names = san.get_values_for_type(x509.DNSName) if san is not None else []
    if not names:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [n.rstrip(".").lower() for n in names]


def _name_matches(pattern: str, name: str) -> bool:
    """RFC 7672 §3.2.3: exact, or ``*`` as the whole leftmost label standing for exactly one label."""
    if pattern == name:
        return True
    if not pattern.startswith("*."):
        return False
    head, _, rest = name.partition(".")
    return bool(head) and rest == pattern[2:] and "." in rest
