"""Self-signed certificates and requests: names, key policy and extensions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgeward.tls.certs import build_request, generate_key, make_self_signed, normalise_hostname
from edgeward.tls.errors import InvalidInput, WeakKey


def _load(cert_pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert_pem)


def test_rsa_self_signed_has_exchange_style_names_and_server_extensions() -> None:
    cert_pem, key_pem = make_self_signed("Mail.Example.COM.")
    cert = _load(cert_pem)
    key = serialization.load_pem_private_key(key_pem, None)

    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "mail.example.com"
    assert cert.issuer == cert.subject
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["mail.example.com", "mail"]
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]

    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha256"
    cert.verify_directly_issued_by(cert)  # raises if the self-signature is wrong


def test_validity_and_serials() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    first = _load(make_self_signed("mx.example.net", days=30, now=now)[0])
    second = _load(make_self_signed("mx.example.net", days=30, now=now)[0])
    assert first.not_valid_after_utc == now + timedelta(days=30)
    assert first.not_valid_before_utc < now  # backdated for peers with slow clocks
    assert first.serial_number != second.serial_number
    assert first.serial_number.bit_length() > 64


def test_ec_uses_p256_and_no_key_encipherment() -> None:
    cert_pem, key_pem = make_self_signed("mx.example.net", key_type="ec")
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    usage = _load(cert_pem).extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment


def test_extra_sans_accept_wildcards_and_ip_addresses_without_duplicates() -> None:
    cert = _load(
        make_self_signed("mx.example.net", extra_sans=["*.example.net", "192.0.2.7", "MX.example.net"])[0]
    )
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["mx.example.net", "mx", "*.example.net"]
    assert sans.get_values_for_type(x509.IPAddress) == [ip_address("192.0.2.7")]


def test_larger_rsa_key() -> None:
    key = serialization.load_pem_private_key(make_self_signed("mx.example.net", key_size=3072)[1], None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072


@pytest.mark.parametrize(
    "name", ["", "-bad.example", "under_score.example", "a..b", "192.0.2.1", "exämple.com"]
)
def test_bad_host_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        normalise_hostname(name)


def test_key_policy() -> None:
    with pytest.raises(WeakKey):
        generate_key("rsa", 1024)
    with pytest.raises(InvalidInput):
        generate_key("dsa", 2048)
    with pytest.raises(InvalidInput):
        make_self_signed("mx.example.net", days=0)
    with pytest.raises(InvalidInput):
        make_self_signed("a" * 60 + ".example.net")  # CN longer than 64 characters


def test_request_carries_names_and_is_signed_by_its_key() -> None:
    key = generate_key("ec")
    csr = build_request(key, "mail.example.com", ["mail.example.com", "smtp.example.com"])
    assert csr.is_signature_valid
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["mail.example.com", "smtp.example.com"]
