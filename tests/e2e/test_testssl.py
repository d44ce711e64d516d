"""testssl.sh against the STARTTLS and the implicit-TLS listener: nothing rated medium or worse.

The gateway serves a certificate from a test CA (with revocation pointers, as a public CA's
would carry), so what testssl.sh judges is the TLS policy, not the trust in a self-signed
certificate.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from edgeward.tls.store import CertificateStore
from tests.e2e.harness import InProcessGateway, free_port, gateway_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")
BAD = {"MEDIUM", "HIGH", "CRITICAL"}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _test_pki(folder: Path, hostname: str) -> tuple[Path, Path, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Edgeward Test CA"))
        .issuer_name(_name("Edgeward Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(hostname))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier("http://crl.example.test/ca.crl")], None, None, None
                    )
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier("http://ocsp.example.test"),
                    )
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain, key_path, ca_path = folder / "chain.pem", folder / "key.pem", folder / "ca.pem"
    chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return chain, key_path, ca_path


def _testssl(target_port: int, ca: Path, out: Path, starttls: bool) -> list[dict[str, str]]:
    assert TESTSSL is not None
    args = [
        TESTSSL,
        "--quiet",
        "--color",
        "0",
        "--warnings",
        "off",
        "--add-ca",
        str(ca),
        "--jsonfile",
        str(out),
        "--ip",
        "127.0.0.1",
    ]
    if starttls:
        args += ["--starttls", "smtp"]
    subprocess.run([*args, f"mx.example.test:{target_port}"], capture_output=True, timeout=600, check=False)
    findings: list[dict[str, str]] = json.loads(out.read_text())
    assert any(f["id"] == "cipherlist_STRONG" for f in findings), "testssl.sh did not complete its scan"
    return findings


@pytest.mark.skipif(
    TESTSSL is None, reason="testssl.sh is not installed (scripts/install-test-deps.sh installs it)"
)
def test_testssl_finds_nothing_medium_or_worse(workdir: Path) -> None:
    chain, key, ca = _test_pki(workdir, "mx.example.test")
    port, implicit_port = free_port(), free_port()
    config = gateway_config(workdir, port=port)
    data = config.model_dump(mode="json")
    implicit = {
        **data["receive_connectors"][0],
        "name": "implicit",
        "bindings": [f"127.0.0.1:{implicit_port}"],
        "implicit_tls": True,
    }
    data["receive_connectors"].append(implicit)
    config = type(config).model_validate(data)
    store = CertificateStore(config.resolve(config.tls.store))
    store.enable(store.import_pem(chain, key).info.thumbprint, "smtp")
    with InProcessGateway(config):
        results = {
            "starttls": _testssl(port, ca, workdir / "starttls.json", starttls=True),
            "implicit": _testssl(implicit_port, ca, workdir / "implicit.json", starttls=False),
        }
    bad = {
        where: [(f["severity"], f["id"], f["finding"]) for f in found if f["severity"] in BAD]
        for where, found in results.items()
    }
    assert bad == {"starttls": [], "implicit": []}
