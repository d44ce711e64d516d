"""The TLS policy over real sockets on 127.0.0.1: versions, ciphers, SNI, verification, client certs."""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path

import pytest
import trustme
from tls_helpers import OneShotServer, exchange, handshake

from edgeward.tls.context import STRICT_CIPHERS, client_context, server_context
from edgeward.tls.store import CertificateStore


@pytest.fixture
def bound(store: CertificateStore) -> tuple[Path, Path]:
    info = store.create_self_signed("mail.example.com")
    store.enable(info.thumbprint, "smtp")
    return store.binding_for("smtp")


def _legacy_client(version: ssl.TLSVersion, ciphers: str = "ALL:@SECLEVEL=0") -> ssl.SSLContext:
    """A client that offers only what a peer with a weak configuration would."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers(ciphers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is deprecated: that is the point
        context.minimum_version = version
        context.maximum_version = version
    return context


def test_verified_handshake_against_the_generated_certificate(bound: tuple[Path, Path]) -> None:
    cert_path, key_path = bound
    info, server = exchange(
        server_context(cert_path, key_path),
        client_context("verify_hostname", cafile=cert_path),
        "mail.example.com",
    )
    assert server.error is None and server.info is not None
    assert info.version == "TLSv1.3" and server.info.version == "TLSv1.3"
    assert info.peer_subject == "CN=mail.example.com"
    assert info.received_comment().startswith("(using TLSv1.3 with cipher ")
    assert server.info.peer_subject is None  # no client certificate asked for


def test_tls12_negotiates_ecdhe_with_aead(bound: tuple[Path, Path]) -> None:
    client = client_context("verify", cafile=bound[0])
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    info, _ = exchange(server_context(*bound), client)
    assert info.version == "TLSv1.2"
    assert info.cipher.startswith("ECDHE-") and ("GCM" in info.cipher or "CHACHA20" in info.cipher)


def test_tls11_is_refused(bound: tuple[Path, Path]) -> None:
    with pytest.raises(ssl.SSLError):
        exchange(server_context(*bound), _legacy_client(ssl.TLSVersion.TLSv1_1))


WEAK_TLS12 = ["AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA", "DHE-RSA-AES128-GCM-SHA256"]


@pytest.mark.parametrize("cipher", WEAK_TLS12)
def test_weak_tls12_ciphers_are_refused(bound: tuple[Path, Path], cipher: str) -> None:
    with pytest.raises(ssl.SSLError):
        exchange(server_context(*bound), _legacy_client(ssl.TLSVersion.TLSv1_2, f"{cipher}:@SECLEVEL=0"))


def _lax_server(bound: tuple[Path, Path]) -> ssl.SSLContext:
    lax = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lax.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lax.minimum_version = ssl.TLSVersion.TLSv1_1
    lax.load_cert_chain(*bound)
    return lax


@pytest.mark.parametrize("cipher", [c for c in WEAK_TLS12 if not c.startswith("DHE")])
def test_control_a_lax_server_accepts_the_weak_clients(bound: tuple[Path, Path], cipher: str) -> None:
    """Shows that the refusals above come from the policy, not from the test client."""
    info, _ = exchange(_lax_server(bound), _legacy_client(ssl.TLSVersion.TLSv1_2, f"{cipher}:@SECLEVEL=0"))
    assert info.cipher == cipher
    info, _ = exchange(_lax_server(bound), _legacy_client(ssl.TLSVersion.TLSv1_1))
    assert info.version == "TLSv1.1"


def test_server_policy_settings(bound: tuple[Path, Path]) -> None:
    context = server_context(*bound)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    for option in (
        ssl.OP_NO_COMPRESSION,
        ssl.OP_NO_RENEGOTIATION,
        ssl.OP_CIPHER_SERVER_PREFERENCE,
        ssl.OP_NO_TICKET,
    ):
        assert context.options & option
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(c["kea"] == "kx-ecdhe" and c["aead"] for c in tls12)
    assert "DHE-" not in STRICT_CIPHERS.replace("ECDHE-", "")


def test_sni_selects_the_connectors_certificate(store: CertificateStore, bound: tuple[Path, Path]) -> None:
    partner = store.create_self_signed("partner.example.org")
    wildcard = store.create_self_signed("any.example.net", extra_sans=["*.example.net"])
    store.enable(partner.thumbprint, "smtp", "Partner")
    store.enable(wildcard.thumbprint, "smtp", "Hosted")
    context = server_context(
        *bound,
        sni={
            "partner.example.org": store.binding_for("smtp", "Partner"),
            "*.example.net": store.binding_for("smtp", "Hosted"),
        },
    )
    opportunistic = client_context()
    assert exchange(context, opportunistic, "partner.example.org")[0].peer_thumbprint == partner.thumbprint
    assert exchange(context, opportunistic, "Partner.Example.ORG")[0].peer_thumbprint == partner.thumbprint
    assert exchange(context, opportunistic, "mx1.example.net")[0].peer_thumbprint == wildcard.thumbprint
    default = store.list()
    default_thumb = next(i.thumbprint for i in default if i.subject == "CN=mail.example.com")
    assert exchange(context, opportunistic, "unknown.example.com")[0].peer_thumbprint == default_thumb
    assert exchange(context, opportunistic, None)[0].peer_thumbprint == default_thumb


def test_opportunistic_encrypts_without_verifying_and_verify_modes_do_verify(
    bound: tuple[Path, Path],
) -> None:
    server = server_context(*bound)
    assert exchange(server, client_context("opportunistic"), "whatever.invalid")[0].version == "TLSv1.3"
    with pytest.raises(ssl.SSLCertVerificationError):
        exchange(server, client_context("verify", cafile=trustme_ca_file(bound[0].parent)))
    with pytest.raises(ssl.SSLCertVerificationError):
        exchange(server, client_context("verify_hostname", cafile=bound[0]), "other.example.com")
    # "verify" checks the chain but not the name (Exchange's CertificateValidation level).
    assert exchange(server, client_context("verify", cafile=bound[0]), "other.example.com")[0].peer_subject


def trustme_ca_file(folder: Path) -> Path:
    path = folder / "unrelated-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def test_client_certificates_for_mutual_tls(bound: tuple[Path, Path], ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "partners.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    partner = ca.issue_cert("mx.partner.example")
    partner_cert, partner_key = tmp_path / "p.pem", tmp_path / "p.key"
    partner.cert_chain_pems[0].write_to_path(str(partner_cert))
    partner.private_key_pem.write_to_path(str(partner_key))

    optional = server_context(*bound, client_ca=ca_file)
    _, without = exchange(optional, client_context())
    assert without.error is None and without.info is not None and without.info.peer_subject is None
    _, with_cert = exchange(optional, client_context(client_cert=(partner_cert, partner_key)))
    assert with_cert.info is not None and with_cert.info.peer_subject is not None
    assert "trustme" in with_cert.info.peer_subject

    required = server_context(*bound, client_ca=ca_file, require_client_cert=True)
    one = OneShotServer(required)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(one.port, client_context())
    assert isinstance(one.join().error, ssl.SSLError)

    with pytest.raises(ValueError):
        server_context(*bound, require_client_cert=True)


def test_unknown_client_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        client_context("encrypt-maybe")  # type: ignore[arg-type]
