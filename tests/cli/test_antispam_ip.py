"""``edgeward antispam ip allow|block`` and ``antispam test-ip`` against a real policy store and nsd."""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.state.policy import default_policy_path
from tests.dnsserver import NSD, Nsd, start_nsd

runner = CliRunner()

ZONE = """$ORIGIN bl.test.
$TTL 60
@ IN SOA ns.bl.test. admin.bl.test. 1 3600 600 86400 60
@ IN NS ns.bl.test.
ns IN A 127.0.0.1
2.0.0.127 IN A 127.0.0.2
3.0.0.127 IN A 127.255.255.254
"""


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text(f"accepted_domains = ['example.test']\n[server]\ndata_dir = '{tmp_path}'\n{extra}")
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["antispam", *args])
    return result.exit_code, result.output


def test_block_add_list_remove_with_comment_expiry_and_json(tmp_path: Path) -> None:
    cfg = str(_config(tmp_path))
    code, out = invoke(
        "ip", "block", "add", "192.0.2.9/24", "--comment", "spam run", "--expires", "2h", "-c", cfg
    )
    assert code == 0 and "block: added 192.0.2.0/24 until" in out, out
    assert invoke("ip", "block", "add", "2001:DB8::1", "-c", cfg)[0] == 0
    code, out = invoke("ip", "block", "list", "--json", "-c", cfg)
    entries = json.loads(out)
    assert [e["network"] for e in entries] == ["192.0.2.0/24", "2001:db8::1/128"]
    assert entries[0]["comment"] == "spam run" and entries[0]["expires"] and entries[1]["expires"] is None
    assert json.loads(invoke("ip", "allow", "list", "--json", "-c", cfg)[1]) == []  # lists are apart
    code, out = invoke("ip", "block", "remove", "192.0.2.0/24", "--json", "-c", cfg)
    assert code == 0 and json.loads(out)["removed"] is True
    code, out = invoke("ip", "block", "remove", "192.0.2.0/24", "-c", cfg)
    assert code == 1 and "is not on the list" in out
    code, out = invoke("ip", "block", "list", "-c", cfg)
    assert "2001:db8::1/128" in out and "192.0.2.0/24" not in out


@pytest.mark.parametrize(
    "args",
    [
        ("ip", "allow", "add", "not-an-ip"),
        ("ip", "allow", "add", "192.0.2.1", "--expires", "soon"),
        ("ip", "allow", "add", "192.0.2.1", "--expires", "0"),
        ("ip", "allow", "add", "192.0.2.1", "--comment", "bad\x1b[31m"),
        ("test-ip", "300.1.1.1"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, _ = invoke(*args, "-c", str(_config(tmp_path)))
    assert code == 2


def test_a_store_made_by_root_is_handed_to_the_service_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to hand files over")
    user = pwd.getpwnam("edgeward")
    os.chown(tmp_path, user.pw_uid, user.pw_gid)
    assert invoke("ip", "allow", "add", "198.51.100.1", "-c", str(_config(tmp_path)))[0] == 0
    db = default_policy_path(tmp_path)
    assert db.stat().st_uid == user.pw_uid and db.parent.stat().st_uid == user.pw_uid


@pytest.fixture
def nameserver(tmp_path: Path) -> Iterator[Nsd]:
    if NSD is None:
        pytest.skip("nsd is not installed (scripts/install-test-deps.sh installs it)")
    server = start_nsd(tmp_path / "nsd", {"bl.test": ZONE})
    yield server
    server.stop()


def test_test_ip_reports_every_list_and_provider(tmp_path: Path, nameserver: Nsd) -> None:
    cfg = str(
        _config(
            tmp_path,
            f"[dns]\nservers = ['127.0.0.1']\nport = {nameserver.port}\n"
            "[[connection_filter.block_providers]]\nname = 'testbl'\nzone = 'bl.test'\n",
        )
    )
    doc = json.loads(invoke("test-ip", "127.0.0.2", "--json", "-c", cfg)[1])
    assert doc["providers"][0]["status"] == "listed" and doc["verdict"].startswith("blocked: 550 5.7.1")
    doc = json.loads(invoke("test-ip", "127.0.0.3", "--json", "-c", cfg)[1])
    assert doc["providers"][0]["status"] == "error" and doc["verdict"].startswith("not listed")
    doc = json.loads(invoke("test-ip", "127.0.0.4", "--json", "-c", cfg)[1])
    assert doc["providers"][0]["status"] == "clean"
    invoke("ip", "allow", "add", "127.0.0.2", "--comment", "partner", "-c", cfg)
    code, out = invoke("test-ip", "127.0.0.2", "-c", cfg)
    assert code == 0, out
    assert out.splitlines()[0] == "127.0.0.2: allow-listed: the other anti-spam agents are skipped"
    assert "IP allow list: 127.0.0.2/32 (partner), expires never" in out
    assert "block provider testbl (bl.test): listed: 127.0.0.2" in out
