from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme

from edgeward.delivery.peercert import pkix_problem


def _chain(leaf: trustme.LeafCert) -> list[bytes]:
    return [ssl.PEM_cert_to_DER_cert(b.bytes().decode()) for b in leaf.cert_chain_pems]


def test_a_ca_valid_certificate_naming_the_host_passes(tmp_path: Path) -> None:
    ca = trustme.CA()
    inter = ca.create_child_ca()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    chain = _chain(inter.issue_cert("mx.example.test"))
    assert len(chain) == 2
    assert pkix_problem(chain, "mx.example.test", ca_file) is None


def test_every_way_to_fail_has_a_reason(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = _chain(ca.issue_cert("mx.example.test"))
    assert "would not verify for other.example.test" in (
        pkix_problem(leaf, "other.example.test", ca_file) or ""
    )
    stranger = _chain(trustme.CA().issue_cert("mx.example.test"))
    assert pkix_problem(stranger, "mx.example.test", ca_file) is not None
    past = datetime.now(UTC) - timedelta(days=400)
    expired = _chain(ca.issue_cert("mx.example.test", not_before=past, not_after=past + timedelta(days=90)))
    assert pkix_problem(expired, "mx.example.test", ca_file) is not None
    assert pkix_problem(expired, "mx.example.test", ca_file, now=past + timedelta(days=1)) is None
    assert pkix_problem([], "mx.example.test", ca_file) == "no certificate"
    assert (
        pkix_problem(leaf, "mx.example.test", tmp_path / "missing.pem") == "no trust anchors to check against"
    )
