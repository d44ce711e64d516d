"""Importing certificates: CSR round trip with a CA, PEM chains with keys, PKCS#12."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from tls_helpers import FakeClock, exchange, sign_csr

from edgeward.tls.certs import load_private_key
from edgeward.tls.context import client_context, server_context
from edgeward.tls.errors import ExpiredCertificate, InvalidInput, KeyMismatch, WrongPassword
from edgeward.tls.info import Binding
from edgeward.tls.store import CertificateStore


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_csr_round_trip_with_a_ca_and_a_verified_handshake(
    store: CertificateStore, ca: trustme.CA, tmp_path: Path
) -> None:
    pending = store.request("mail.example.com", extra_sans=["smtp.example.com"])
    assert pending.names == ("mail.example.com", "smtp.example.com")  # no short name for a CA
    assert pending.csr_path.read_bytes() == pending.csr_pem
    assert [p.id for p in store.pending()] == [pending.id]

    answer = _write(tmp_path / "answer.pem", sign_csr(ca, pending.csr_pem))
    result = store.import_pem(answer)  # no key: the pending request holds it

    assert result.info.issuer != result.info.subject and not result.info.self_signed
    assert store.pending() == []
    assert not (store.root / "keys" / f"request-{pending.id}.key").exists()
    store.enable(result.info.thumbprint, "smtp")
    cert_path, key_path = store.binding_for("smtp")

    ca_file = _write(tmp_path / "ca.pem", ca.cert_pem.bytes())
    info, server = exchange(
        server_context(cert_path, key_path),
        client_context("verify_hostname", cafile=ca_file),
        "smtp.example.com",
    )
    assert server.error is None
    assert info.peer_thumbprint == result.info.thumbprint


def test_answer_to_a_renewal_request_takes_over_the_bindings(
    store: CertificateStore, ca: trustme.CA, tmp_path: Path
) -> None:
    first = store.import_pem(
        _write(tmp_path / "a.pem", sign_csr(ca, store.request("mail.example.com").csr_pem))
    )
    store.enable(first.info.thumbprint, "smtp", "Internet")
    renewal = store.request_renewal(first.info.thumbprint)
    assert renewal.renews == first.info.thumbprint and renewal.names == ("mail.example.com",)

    second = store.import_pem(_write(tmp_path / "b.pem", sign_csr(ca, renewal.csr_pem)))

    assert second.info.bindings == (Binding("smtp", "Internet"),)
    assert store.get(first.info.thumbprint).bindings == ()
    assert any("moved" in w for w in second.warnings)


def test_pem_chain_in_any_order_is_stored_leaf_first(
    store: CertificateStore, ca: trustme.CA, tmp_path: Path
) -> None:
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("mail.example.com")
    leaf_pem, inter_pem = (blob.bytes() for blob in leaf.cert_chain_pems)
    unrelated = trustme.CA().cert_pem.bytes()
    chain = _write(tmp_path / "chain.pem", inter_pem + unrelated + leaf_pem)
    key = _write(tmp_path / "key.pem", leaf.private_key_pem.bytes())

    result = store.import_pem(chain, key)

    stored = x509.load_pem_x509_certificates(
        (store.root / "certs" / f"{result.info.thumbprint}.pem").read_bytes()
    )
    assert [c.public_bytes(serialization.Encoding.PEM) for c in stored] == [leaf_pem, inter_pem]
    assert any("left out" in w for w in result.warnings)


def test_missing_intermediate_is_a_warning(store: CertificateStore, ca: trustme.CA, tmp_path: Path) -> None:
    leaf = ca.create_child_ca().issue_cert("mail.example.com")
    chain = _write(tmp_path / "leaf.pem", leaf.cert_chain_pems[0].bytes())
    result = store.import_pem(chain, _write(tmp_path / "key.pem", leaf.private_key_pem.bytes()))
    assert any("no issuer certificate" in w for w in result.warnings)


def test_key_that_does_not_match_is_refused(store: CertificateStore, ca: trustme.CA, tmp_path: Path) -> None:
    one, other = ca.issue_cert("a.example.com"), ca.issue_cert("b.example.com")
    chain = _write(tmp_path / "chain.pem", one.cert_chain_pems[0].bytes())
    with pytest.raises(KeyMismatch):
        store.import_pem(chain, _write(tmp_path / "key.pem", other.private_key_pem.bytes()))
    assert store.list() == []


def test_certificate_without_key_or_request_is_refused(
    store: CertificateStore, ca: trustme.CA, tmp_path: Path
) -> None:
    chain = _write(tmp_path / "chain.pem", ca.issue_cert("a.example.com").cert_chain_pems[0].bytes())
    with pytest.raises(InvalidInput, match="no private key"):
        store.import_pem(chain)


def test_garbage_and_missing_files_are_refused(store: CertificateStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        store.import_pem(_write(tmp_path / "junk.pem", b"hello"))
    with pytest.raises(InvalidInput):
        store.import_pem(tmp_path / "absent.pem")


def test_expired_import_is_refused_unless_allowed(
    store: CertificateStore, clock: FakeClock, ca: trustme.CA, tmp_path: Path
) -> None:
    past = datetime.now(UTC) - timedelta(days=400)
    leaf = ca.issue_cert("old.example.com", not_before=past, not_after=past + timedelta(days=90))
    bundle = _write(tmp_path / "old.pem", leaf.private_key_and_cert_chain_pem.bytes())
    with pytest.raises(ExpiredCertificate):
        store.import_pem(bundle)
    result = store.import_pem(bundle, allow_expired=True)
    assert any("expired" in w for w in result.warnings)
    with pytest.raises(ExpiredCertificate):
        store.enable(result.info.thumbprint, "smtp")


def test_ca_issued_certificate_expiring_soon_gives_a_warning_not_a_renewal(
    store: CertificateStore, clock: FakeClock, ca: trustme.CA, tmp_path: Path
) -> None:
    leaf = ca.issue_cert("mail.example.com", not_after=clock.moment + timedelta(days=10))
    result = store.import_pem(_write(tmp_path / "soon.pem", leaf.private_key_and_cert_chain_pem.bytes()))
    assert any("expires in" in w for w in result.warnings)
    store.enable(result.info.thumbprint, "smtp")

    report = store.renew_due(within_days=30)

    assert report.renewed == ()
    [warning] = report.warnings
    assert "mail.example.com" in warning and "smtp" in warning
    assert [i.thumbprint for i in store.list()] == [result.info.thumbprint]


def test_encrypted_pem_key_needs_its_password(
    store: CertificateStore, ca: trustme.CA, tmp_path: Path
) -> None:
    leaf = ca.issue_cert("mail.example.com")
    key = load_private_key(leaf.private_key_pem.bytes())
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    chain = _write(tmp_path / "chain.pem", leaf.cert_chain_pems[0].bytes())
    key_path = _write(tmp_path / "key.pem", encrypted)
    with pytest.raises(WrongPassword):
        store.import_pem(chain, key_path)
    with pytest.raises(WrongPassword):
        store.import_pem(chain, key_path, password="wrong")
    result = store.import_pem(chain, key_path, password="s3cret")
    stored_key = (store.root / "keys" / f"{result.info.thumbprint}.key").read_bytes()
    assert b"ENCRYPTED" not in stored_key  # the gateway starts unattended; the file mode protects it


def _pfx(leaf: trustme.LeafCert, password: bytes | None, *, with_key: bool = True) -> bytes:
    key = load_private_key(leaf.private_key_pem.bytes())
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return pkcs12.serialize_key_and_certificates(
        b"edge",
        key if with_key else None,
        cert,
        None,
        encryption,
    )


def test_pkcs12_right_and_wrong_password(store: CertificateStore, ca: trustme.CA, tmp_path: Path) -> None:
    leaf = ca.issue_cert("mail.example.com")
    pfx = _write(tmp_path / "edge.pfx", _pfx(leaf, b"correct horse"))
    with pytest.raises(WrongPassword):
        store.import_pkcs12(pfx, "battery staple")
    with pytest.raises(WrongPassword):
        store.import_pkcs12(pfx, None)
    assert store.list() == []

    result = store.import_pkcs12(pfx, "correct horse")
    assert result.info.sans == ("mail.example.com",)
    assert (store.root / "keys" / f"{result.info.thumbprint}.key").stat().st_mode & 0o777 == 0o600


def test_pkcs12_without_key_answers_a_pending_request(
    store: CertificateStore, ca: trustme.CA, tmp_path: Path
) -> None:
    pending = store.request("mail.example.com", key_type="ec")
    cert = x509.load_pem_x509_certificate(sign_csr(ca, pending.csr_pem))
    data = pkcs12.serialize_key_and_certificates(b"answer", None, cert, None, serialization.NoEncryption())
    result = store.import_pkcs12(_write(tmp_path / "answer.p12", data))
    assert result.info.key_type == "ec" and store.pending() == []
