"""``edgeward web``'s accounts and tokens from the command line, and which certificate it serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.cli.web import _certificate
from edgeward.config.load import load_config
from edgeward.tls.store import CertificateStore
from edgeward.web.auth import LoginRefused, WebAccounts

runner = CliRunner()


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text(
        'accepted_domains = ["example.org"]\n'
        f'[server]\nhostname = "mx.example.org"\ndata_dir = "{tmp_path}"\n'
    )
    return path


def _run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_accounts_are_added_listed_and_removed(config_path: Path, tmp_path: Path) -> None:
    c = str(config_path)
    assert (
        _run(
            "web", "user", "add", "Ops", "-c", c, "--role", "admin", "--password-stdin", stdin="s3cret pw\n"
        )[0]
        == 0
    )
    code, _out, err = _run("web", "user", "add", "ops", "-c", c, "--password-stdin", stdin="other\n")
    assert code == 2 and "exists already" in err
    code, _out, err = _run(
        "web", "user", "add", "x", "-c", c, "--role", "root", "--password-stdin", stdin="pw\n"
    )
    assert code == 2 and "--role" in err
    code, out, _ = _run("web", "user", "list", "-c", c, "--json")
    assert code == 0 and json.loads(out) == [
        {
            "name": "ops",
            "role": "admin",
            "created": json.loads(out)[0]["created"],
            "totp": False,
            "addresses": [],
        }
    ]
    accounts = WebAccounts(tmp_path / "state")
    cookie, _session = accounts.login("OPS", "s3cret pw", "192.0.2.1")
    assert _run("web", "user", "remove", "ops", "-c", c)[0] == 0
    assert accounts.session(cookie) is None  # its sessions ended with it
    with pytest.raises(LoginRefused):
        accounts.login("ops", "s3cret pw", "192.0.2.1")
    code, _out, err = _run("web", "user", "remove", "ops", "-c", c)
    assert code == 2 and "no console account" in err


def test_tokens_are_shown_once_and_stored_hashed(config_path: Path, tmp_path: Path) -> None:
    c = str(config_path)
    code, secret, _ = _run("web", "token", "add", "grafana", "-c", c)
    secret = secret.strip()
    assert code == 0 and secret.startswith("ew_") and len(secret) > 40
    assert secret not in (tmp_path / "state" / "web.db").read_bytes().decode("latin-1")
    code, out, _ = _run("web", "token", "list", "-c", c, "--json")
    assert [(t["name"], t["role"]) for t in json.loads(out)] == [("grafana", "readonly")]
    accounts = WebAccounts(tmp_path / "state")
    token = accounts.token_role(secret)
    assert token is not None and token.role == "readonly"
    assert _run("web", "token", "add", "grafana", "-c", c)[0] == 2
    assert _run("web", "token", "remove", "grafana", "-c", c)[0] == 0
    assert accounts.token_role(secret) is None


def test_a_bad_listen_address_is_a_clear_error(config_path: Path) -> None:
    code, _out, err = _run("web", "-c", str(config_path), "--listen", "localhost:99999")
    assert code == 2 and "--listen" in err


def test_the_https_binding_wins_over_the_default_certificate(config_path: Path) -> None:
    config = load_config(config_path)
    store = CertificateStore(config.resolve(config.tls.store))
    default_cert, _ = _certificate(config)  # nothing bound for https: the smtp default, made now
    assert default_cert == store.binding_for("smtp")[0]
    info = store.create_self_signed("console.example.org")
    store.enable(info.thumbprint, "https")
    cert, key = _certificate(config)
    assert cert != default_cert and (cert, key) == store.binding_for("https")


@pytest.mark.parametrize(
    ("listen", "require", "warned"),
    [("127.0.0.1:8443", False, False), ("[::1]:8443", False, False), ("0.0.0.0:8443", False, True),
     ("192.0.2.1:443", True, False)],
)  # fmt: skip
def test_config_check_warns_of_a_console_beyond_loopback_without_totp(
    listen: str, require: bool, warned: bool
) -> None:
    from edgeward.config.check import audit
    from edgeward.config.load import parse_config

    config = parse_config({"accepted_domains": ["example.org"],
                           "web": {"listen": listen, "require_totp_for_admins": require}})  # fmt: skip
    found = [p for p in audit(config) if p.key == "web.listen"]
    assert bool(found) == warned and all(p.severity == "warning" for p in found)


def test_end_user_addresses_and_totp_show_in_the_list(config_path: Path) -> None:
    c = str(config_path)
    add = ("web", "user", "add", "al", "-c", c, "--role", "user", "--address", "al@example.org")
    assert _run(*add, "--password-stdin", stdin="pw pw\n")[0] == 0
    assert _run("web", "user", "address", "add", "al", "AL2@example.org", "al@example.org", "-c", c)[0] == 0
    code, _out, err = _run("web", "user", "address", "add", "al", "not an address", "-c", c)
    assert code == 2 and "not an email address" in err
    assert _run("web", "user", "totp", "enable", "al", "-c", c)[0] == 0
    code, out, _ = _run("web", "user", "list", "-c", c, "--json")
    [row] = json.loads(out)
    assert row["addresses"] == ["al2@example.org", "al@example.org"] and row["totp"] is True
    assert _run("web", "user", "address", "remove", "al", "al2@example.org", "-c", c)[0] == 0
    code, _out, err = _run("web", "user", "address", "remove", "al", "al2@example.org", "-c", c)
    assert code == 2 and "not an address of" in err
    code, out, _ = _run("web", "user", "list", "-c", c)
    assert code == 0 and "al@example.org" in out and "yes" in out
    code, _out, err = _run("web", "user", "totp", "disable", "nobody", "-c", c)
    assert code == 2 and "no console account" in err
