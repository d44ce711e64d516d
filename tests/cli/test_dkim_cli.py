"""``edgeward dkim keygen`` and ``dkim record``: the key file, its owner, and the record it prints."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import dkim
import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app

CONFIG = """accepted_domains = ["example.test"]
[server]
data_dir = "{data}"
[dkim_sign]
selector = "{selector}"
domains = ["example.test", "example.org"]
key_file = "{key}"
bits = 1024
"""
MESSAGE = b"From: a@example.org\r\nTo: b@remote.test\r\nSubject: hi\r\n\r\nhello\r\n"


def _config(tmp_path: Path, selector: str = "edge", key: str = "") -> tuple[Path, Path]:
    key_file = Path(key) if key else tmp_path / "data" / "dkim" / "edge.key"
    cfg = tmp_path / "edgeward.toml"
    cfg.write_text(CONFIG.format(data=tmp_path / "data", selector=selector, key=key_file))
    return cfg, key_file


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_keygen_writes_a_private_key_and_prints_a_record_that_verifies(tmp_path: Path) -> None:
    cfg, key_file = _config(tmp_path)
    code, out = run("dkim", "keygen", "-c", str(cfg), "--json")
    assert code == 0, out
    records = json.loads(out)
    assert [r["name"] for r in records] == ["edge._domainkey.example.test.", "edge._domainkey.example.org."]
    assert all(len(s) <= 255 for s in records[0]["strings"])
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.parent.stat().st_mode & 0o777 == 0o700
    txt = "".join(records[1]["strings"]).encode()
    assert txt.startswith(b"v=DKIM1; k=rsa; p=")
    signed = dkim.sign(MESSAGE, b"edge", b"example.org", key_file.read_bytes()) + MESSAGE
    assert dkim.verify(
        signed, dnsfunc=lambda name, timeout=5: txt if name == b"edge._domainkey.example.org." else b""
    )
    # The record of the key on disk is the one keygen printed; text form for the zone file.
    code, text = run("dkim", "record", "-c", str(cfg))
    assert code == 0
    assert text.splitlines()[1].startswith('edge._domainkey.example.org. IN TXT ( "v=DKIM1; k=rsa; p=')
    assert re.sub(r'[\s"()]', "", text.splitlines()[1]).endswith(
        "".join(records[1]["strings"]).replace(" ", "")
    )


def test_an_existing_key_is_kept_unless_forced(tmp_path: Path) -> None:
    cfg, key_file = _config(tmp_path)
    assert run("dkim", "keygen", "-c", str(cfg))[0] == 0
    first = key_file.read_bytes()
    code, out = run("dkim", "keygen", "-c", str(cfg))
    assert code == 2 and "exists" in out
    assert key_file.read_bytes() == first
    assert run("dkim", "keygen", "-c", str(cfg), "--force")[0] == 0
    assert key_file.read_bytes() != first
    assert [p.name for p in key_file.parent.iterdir()] == ["edge.key"]  # no temporary left


def test_bad_input_is_exit_code_2(tmp_path: Path) -> None:
    cfg, _ = _config(tmp_path, selector="")
    code, out = run("dkim", "keygen", "-c", str(cfg))
    assert code == 2 and "selector" in out
    cfg, key_file = _config(tmp_path)
    code, out = run("dkim", "record", "-c", str(cfg))
    assert code == 2 and "cannot read" in out
    key_file.parent.mkdir(parents=True)
    key_file.write_text("not a key")
    code, out = run("dkim", "record", "-c", str(cfg))
    assert code == 2 and "not a usable RSA private key" in out


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to the service user needs root")
def test_as_root_the_key_belongs_to_the_service_user(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 65534, 65534)
    cfg, key_file = _config(tmp_path)
    assert run("dkim", "keygen", "-c", str(cfg))[0] == 0
    for path in (key_file, key_file.parent):
        assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534)


def test_config_check_warns_about_a_missing_or_open_key(tmp_path: Path) -> None:
    cfg, key_file = _config(tmp_path)
    cfg.write_text(cfg.read_text().replace("[dkim_sign]", "[dkim_sign]\nenabled = true"))
    out = run("config", "check", "-c", str(cfg))[1]
    assert "dkim_sign.key_file" in out and "does not exist" in out, out
    assert run("dkim", "keygen", "-c", str(cfg))[0] == 0
    assert "dkim_sign.key_file" not in run("config", "check", "-c", str(cfg))[1]
    key_file.chmod(0o644)
    assert "readable by others" in run("config", "check", "-c", str(cfg))[1]
