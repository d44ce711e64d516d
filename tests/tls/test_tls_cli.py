"""``edgeward cert`` through typer's CliRunner: outputs, bindings and exit code 2 on bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from tls_helpers import sign_csr
from typer.testing import CliRunner

from edgeward.cli.cert import cert_app
from edgeward.tls.certs import load_private_key

Invoke = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(store_root: Path) -> Invoke:
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(cert_app, [*args, "--store", str(store_root)], env={"COLUMNS": "200"})
        return result.exit_code, result.stdout, result.stderr

    return invoke


def _listing(run: Invoke) -> dict[str, Any]:
    code, out, _ = run("list", "--json")
    assert code == 0
    doc: dict[str, Any] = json.loads(out)
    return doc


def test_new_list_enable_renew_remove(run: Invoke) -> None:
    code, out, err = run(
        "new", "mail.example.com", "--san", "192.0.2.25", "--key-type", "ec", "--service", "smtp"
    )
    assert code == 0, err
    thumb = out.strip()
    [cert] = _listing(run)["certificates"]
    assert cert["thumbprint"] == thumb and cert["sans"] == ["mail.example.com", "mail", "192.0.2.25"]
    assert cert["key_type"] == "ec" and cert["bindings"] == [{"service": "smtp", "connector": None}]

    code, out, _ = run("list")
    assert code == 0 and thumb[:16] in out and "self-signed" in out

    code, out, _ = run("enable", thumb[:10], "--service", "https", "--connector", "Web")
    assert code == 0 and "bound to https" in out

    code, _, err = run("remove", thumb)
    assert code == 2 and "bound to" in err

    code, out, _ = run("renew", thumb)
    assert code == 0
    new = out.strip()
    assert new != thumb
    [cert] = _listing(run)["certificates"]
    assert cert["thumbprint"] == new and len(cert["bindings"]) == 2

    code, _, _ = run("remove", new, "--force")
    assert code == 0 and _listing(run)["certificates"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("enable", "DEADBEEFDEADBEEF", "--service", "smtp"), "no certificate"),
        (("new", "not_a_host!"), "not a host name"),
        (("new", "mail.example.com", "--key-size", "1024"), "RSA key size"),
        (("import", "/nonexistent/cert.pem"), "cannot read"),
    ],
)
def test_bad_input_exits_2_with_a_message(run: Invoke, args: tuple[str, ...], message: str) -> None:
    code, _, err = run(*args)
    assert code == 2
    assert err.startswith("error: ") and message in err


def test_enable_with_an_unknown_service_is_a_usage_error(run: Invoke) -> None:
    code, out, _ = run("new", "mail.example.com")
    code, _, _ = run("enable", out.strip(), "--service", "imap")
    assert code == 2


def test_request_and_import_of_the_answer(run: Invoke, ca: trustme.CA, tmp_path: Path) -> None:
    csr_file = tmp_path / "mail.csr"
    code, _, err = run("request", "mail.example.com", "--san", "smtp.example.com", "--out", str(csr_file))
    assert code == 0 and "import the CA's answer" in err
    assert _listing(run)["pending"][0]["names"] == ["mail.example.com", "smtp.example.com"]

    answer = tmp_path / "answer.pem"
    answer.write_bytes(sign_csr(ca, csr_file.read_bytes()))
    code, out, err = run("import", str(answer))
    assert code == 0, err
    listing = _listing(run)
    assert listing["pending"] == []
    [cert] = listing["certificates"]
    assert cert["thumbprint"] == out.strip() and cert["self_signed"] is False

    code, out, err = run("renew", cert["thumbprint"])  # CA-issued: a new request instead
    assert code == 0 and out.startswith("-----BEGIN CERTIFICATE REQUEST-----")


def test_import_pkcs12_with_password_file_and_wrong_password(
    run: Invoke, ca: trustme.CA, tmp_path: Path
) -> None:
    leaf = ca.issue_cert("mail.example.com")
    key = load_private_key(leaf.private_key_pem.bytes())
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    pfx = tmp_path / "edge.bin"  # no telling suffix: detected by content
    pfx.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"edge", key, cert, None, serialization.BestAvailableEncryption(b"pfx-pass")
        )
    )
    code, _, err = run("import", str(pfx), "--password", "nope")
    assert code == 2 and "wrong password" in err
    secret = tmp_path / "secret"
    secret.write_text("pfx-pass\n")
    code, out, err = run("import", str(pfx), "--password-file", str(secret))
    assert code == 0, err
    assert len(out.strip()) == 64


def test_import_of_a_key_that_does_not_match(run: Invoke, ca: trustme.CA, tmp_path: Path) -> None:
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    ca.issue_cert("a.example.com").cert_chain_pems[0].write_to_path(str(chain))
    ca.issue_cert("b.example.com").private_key_pem.write_to_path(str(key))
    code, _, err = run("import", str(chain), "--key", str(key))
    assert code == 2 and "does not belong" in err


def test_renew_due_reports(run: Invoke) -> None:
    code, out, _ = run("new", "mail.example.com", "--days", "5")
    code, renewed, _ = run("renew-due")
    assert code == 0 and renewed.startswith(f"renewed {out.strip()} as ")


def test_store_is_required() -> None:
    result = CliRunner().invoke(cert_app, ["list"], env={"EDGEWARD_TLS_STORE": None})
    assert result.exit_code == 2
