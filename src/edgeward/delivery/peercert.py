"""Would this peer's certificate pass PKIX and host-name checks? Asked after the fact.

This module owns the check behind MTA-STS ``testing`` mode (RFC 8461 §5): a policy in testing
does not change how mail is sent, but an administrator wants to know, before switching the
domain to ``enforce``, which MX hosts would then fail. The session is secured as the connector
says (opportunistic TLS does not verify), and the chain the server sent is checked afterwards
with ``cryptography``'s X.509 path validation against the same trust anchors an enforced
policy would use.

Security: this never decides whether mail is sent; it only produces a reason for the log and
the tracking detail. The trust store is read once per file and kept.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509 import DNSName, SubjectAlternativeName
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

__all__ = ["pkix_problem"]

# The prediction must match OpenSSL, which does the checking once the policy is enforced. The
# Web PKI defaults for leaves are stricter than OpenSSL (a critical subjectAltName beside a
# subject, as many private CAs issue, is refused), so leaves only need a subjectAltName here,
# critical or not; CA certificates keep the Web PKI rules (basic constraints, key usage).
_EE_POLICY = ExtensionPolicy.permit_all().require_present(SubjectAlternativeName, Criticality.AGNOSTIC, None)


@functools.lru_cache(maxsize=4)
def _store(ca_file: Path | None) -> Store | None:
    path = ca_file or Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    try:
        anchors = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        return None
    return Store(anchors) if anchors else None


def pkix_problem(
    chain: Sequence[bytes], host: str, ca_file: Path | None = None, *, now: datetime | None = None
) -> str | None:
    """None when ``chain`` (DER, leaf first) is CA-valid and names ``host``; else why not."""
    if not chain:
        return "no certificate"
    store = _store(ca_file)
    if store is None:
        return "no trust anchors to check against"
    try:
        leaf = x509.load_der_x509_certificate(chain[0])
        intermediates = [x509.load_der_x509_certificate(der) for der in chain[1:]]
        verifier = (
            PolicyBuilder()
            .store(store)
            .time(now or datetime.now(UTC))
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_EE_POLICY)
            .build_server_verifier(DNSName(host))
        )
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        return f"certificate would not verify for {host}: {exc}"
    except ValueError as exc:
        return f"certificate cannot be read: {exc}"
    return None
