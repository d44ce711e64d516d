"""TLS on a receive connection: the handshake, and what a client certificate proves.

Owns upgrading a stream to TLS (STARTTLS or implicit TLS), describing the result for the
Received header and logs, and turning a verified client certificate into permission groups:
``partners`` when it names a domain-secure partner domain (Exchange's domain security),
``servers`` when it names a trusted server.

Security: a certificate counts only if OpenSSL verified it against the connector's
``client_ca`` (``getpeercert()`` returns nothing otherwise); names are compared exactly and
case-insensitively, with no wildcard matching on the client side.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from edgeward.config.schema import ReceiveConnectorConfig


@dataclass(frozen=True, slots=True)
class TlsState:
    description: str  # "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256 bits)"
    peer_names: tuple[str, ...] = ()  # from a verified client certificate, lower-case


def discard_buffered(reader: asyncio.StreamReader) -> None:
    """Drop plaintext the stream holds beyond what the session has read.

    Anything the client sent after the STARTTLS line must not be read as if it came inside TLS
    (CVE-2011-0411). asyncio has no public call for this, so the buffer is cleared directly.
    """
    buffered = getattr(reader, "_buffer", None)
    if isinstance(buffered, bytearray):
        buffered.clear()


async def upgrade(
    writer: asyncio.StreamWriter, context: ssl.SSLContext, handshake_timeout: float
) -> TlsState:
    """Run the server side of a TLS handshake on ``writer``'s connection."""
    await writer.start_tls(context, ssl_handshake_timeout=handshake_timeout)
    ssl_object = writer.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        return TlsState("TLS")
    cipher = ssl_object.cipher()
    description = f"{ssl_object.version()} with cipher {cipher[0]} ({cipher[2]} bits)" if cipher else "TLS"
    return TlsState(description, certificate_names(ssl_object.getpeercert()))


def certificate_names(cert: object) -> tuple[str, ...]:
    """DNS names of a verified peer certificate (SANs, else the subject CN, per RFC 6125)."""
    if not isinstance(cert, dict) or not cert:
        return ()
    sans = tuple(str(v).lower().rstrip(".") for k, v in cert.get("subjectAltName", ()) if k == "DNS")
    if sans:
        return sans
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return (str(value).lower().rstrip("."),)
    return ()


def certificate_groups(connector: ReceiveConnectorConfig, names: tuple[str, ...]) -> frozenset[str]:
    """Permission groups proven by a verified client certificate carrying ``names``."""
    groups: set[str] = set()
    if names and any(n in names for n in connector.domain_secure_partners):
        groups.add("partners")
    trusted = {n.lower().rstrip(".") for n in connector.trusted_server_names}
    if trusted & set(names):
        groups.add("servers")
    return frozenset(groups)
