"""SSLContext factories with the gateway's TLS policy, and a description of a negotiated session.

Owns the one place where protocol versions, cipher suites and TLS options are chosen, for the
listener (``server_context``, used by STARTTLS on receive connectors) and for delivery
(``client_context``, used by send connectors), plus ``describe`` for logs and Received headers.

Policy, and why:

* TLS 1.2 is the minimum (RFC 8996 retired 1.0 and 1.1); TLS 1.3 is allowed and preferred.
* TLS 1.2 suites are ECDHE with AEAD only (AES-GCM, ChaCha20-Poly1305): forward secrecy and no
  CBC padding oracles. Finite-field DHE is off: weak or shared groups (Logjam) and slow. TLS 1.3
  suites are all AEAD with ephemeral key exchange; OpenSSL's defaults are kept.
* ``@SECLEVEL=2``: at least 112-bit security for keys and groups whatever the system's
  OpenSSL configuration says.
* No compression (CRIME), no renegotiation (CVE-2009-3555 class and a cheap CPU
  exhaustion), and the server's cipher order wins so that a client cannot steer to its weakest
  common choice.
* No stateless session tickets (``OP_NO_TICKET``). OpenSSL encrypts tickets with a key made
  when the context is created, and Python offers no way to rotate it; a gateway runs for
  weeks, so one stolen key would decrypt every resumed session of that time, which undoes
  forward secrecy. With the option set, TLS 1.2 resumes through the server's session cache
  and TLS 1.3 sends stateful tickets (ids into that cache), so resumption still works. SMTP
  clients rarely resume anyway.

Outbound opportunistic TLS (RFC 7435, what MTAs do by default) is the one deliberate
relaxation: the peer's certificate is not checked, so its key size is irrelevant, and the only
alternative to a weaker (but still forward-secret, ECDHE) CBC suite is cleartext. Verifying
modes keep the strict list.

Security: this module never reads key material itself; ``load_cert_chain`` gets paths. A
client certificate requested with ``client_ca`` is verified against that CA only; note that
OpenSSL then rejects the handshake when a client presents a certificate that does not verify,
even in CERT_OPTIONAL mode.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes

STRICT_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "@SECLEVEL=2",
    ]
)
# For unverified outbound delivery only: still ECDHE (forward secret), adds AES-CBC for old MTAs
# and security level 1 because an unchecked certificate's key size protects nothing.
OPPORTUNISTIC_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:!aNULL:!eNULL:!SHA1:@SECLEVEL=1"
_COMMON_OPTIONS = ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION

ClientMode = Literal["opportunistic", "verify", "verify_hostname"]


def server_context(
    cert_path: Path,
    key_path: Path,
    *,
    sni: Mapping[str, tuple[Path, Path]] | None = None,
    client_ca: Path | None = None,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """A listener context serving ``cert_path``/``key_path`` under the strict policy.

    ``sni`` maps a host name (or ``*.domain``) to another ``(cert, key)`` pair, chosen when the
    client names that host in SNI; any other or no name gets the default certificate.
    ``client_ca`` asks clients for a certificate issued by that CA (optional unless
    ``require_client_cert``), for mutual TLS with partners.
    """
    if require_client_cert and client_ca is None:
        raise ValueError("require_client_cert needs client_ca to verify client certificates against")
    context = _server(cert_path, key_path, client_ca, require_client_cert)
    if sni:
        children = {
            _sni_key(name): _server(cert, key, client_ca, require_client_cert)
            for name, (cert, key) in sni.items()
        }

        def select(conn: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> int | None:
            if server_name is not None:
                chosen = _match(children, server_name)
                if chosen is not None:
                    conn.context = chosen
            return None  # continue the handshake; an unknown name gets the default certificate

        context.sni_callback = select
    return context


def client_context(
    mode: ClientMode = "opportunistic",
    cafile: Path | None = None,
    client_cert: tuple[Path, Path] | None = None,
) -> ssl.SSLContext:
    """A delivery context.

    * ``opportunistic``: encrypt, do not verify (RFC 7435; Exchange "EncryptionOnly").
    * ``verify``: the chain must verify against ``cafile`` (or the system store), any name
      (Exchange "CertificateValidation"; also for a partner's pinned self-signed certificate).
    * ``verify_hostname``: the chain and the host name must verify (Exchange "DomainValidation").

    ``client_cert`` is ``(cert_path, key_path)`` presented when a server asks (mutual TLS).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _apply_common(context)
    if mode == "opportunistic":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_ciphers(OPPORTUNISTIC_CIPHERS)
    elif mode in ("verify", "verify_hostname"):
        context.set_ciphers(STRICT_CIPHERS)
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = mode == "verify_hostname"
        if cafile is not None:
            context.load_verify_locations(cafile=cafile)
            # The CA file may pin a partner's own certificate or an intermediate (Exchange's
            # direct trust); any certificate in it is a trust anchor, as in Python 3.13's defaults.
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        raise ValueError(f"unknown TLS client mode {mode!r}")
    if client_cert is not None:
        context.load_cert_chain(client_cert[0], client_cert[1])
    return context


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """What was negotiated, for the protocol log, tracking and the Received header."""

    version: str
    cipher: str
    bits: int
    peer_subject: str | None = None
    peer_thumbprint: str | None = None

    def received_comment(self) -> str:
        """The Received-header comment, in the form Postfix and others write it."""
        return f"(using {self.version} with cipher {self.cipher} ({self.bits} bits))"


def describe(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> TLSInfo:
    """Describe an established TLS session (``transport.get_extra_info("ssl_object")``)."""
    cipher = ssl_object.cipher()
    name, _, bits = cipher if cipher is not None else ("unknown", "", 0)
    subject = thumb = None
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        # The binary form is available even when the certificate was not verified; the text
        # form is not, and it is the subject that a log reader needs.
        cert = x509.load_der_x509_certificate(der)
        subject = cert.subject.rfc4514_string()
        thumb = cert.fingerprint(hashes.SHA256()).hex().upper()
    return TLSInfo(ssl_object.version() or "unknown", name, bits or 0, subject, thumb)


def _apply_common(context: ssl.SSLContext) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.options |= _COMMON_OPTIONS


def _server(cert: Path, key: Path, client_ca: Path | None, require: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_common(context)
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_TICKET
    context.set_ciphers(STRICT_CIPHERS)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED if require else ssl.CERT_OPTIONAL
    return context


def _sni_key(name: str) -> str:
    return name.strip().lower().removesuffix(".")


def _match(children: Mapping[str, ssl.SSLContext], server_name: str) -> ssl.SSLContext | None:
    name = _sni_key(server_name)
    exact = children.get(name)
    if exact is not None:
        return exact
    # A wildcard covers exactly one label (RFC 6125 §6.4.3).
    _, dot, parent = name.partition(".")
    return children.get(f"*.{parent}") if dot else None
