"""``edgeward directory sync|status|lookup|test`` against a private slapd."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest
import trustme
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.testing.slapd import SUFFIX, SYNC_DN, SYNC_PW, Slapd, add_user, users_ldif

runner = CliRunner()


def _config(tmp_path: Path, server: Slapd, *, password: str = SYNC_PW, extra: str = "") -> Path:
    pw = tmp_path / "bind.pw"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    path = tmp_path / "edgeward.toml"
    path.write_text(
        f"accepted_domains = ['example.org']\n[server]\ndata_dir = '{tmp_path}'\n"
        f"[directory]\nurls = ['{server.ldaps_url}']\nbase_dn = '{SUFFIX}'\nbind_dn = '{SYNC_DN}'\n"
        f"password_file = '{pw}'\nca_file = '{server.ca_file}'\ntimeout = '10s'\n{extra}"
    )
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["directory", *args])
    return result.exit_code, result.output


def test_sync_status_lookup(slapd: Slapd, tmp_path: Path) -> None:
    add_user(
        slapd.admin(), "alice", "alice@example.org", alternates=("a@example.org",), safe=("@partner.net",)
    )
    slapd.load(users_ldif(30))
    cfg = str(_config(tmp_path, slapd))
    code, out = invoke("status", "-c", cfg)
    assert code == 1 and "no replica yet" in out
    code, out = invoke("sync", "-c", cfg)
    assert code == 0, out
    assert "full sync: 31 objects" in out
    code, out = invoke("sync", "-c", cfg)
    assert code == 0 and "incremental sync: 31 objects" in out
    code, out = invoke("status", "-c", cfg, "--json")
    info = json.loads(out)
    assert info["counts"]["users"] == 31 and info["counts"]["addresses"] == 62 and not info["stale"]
    assert info["last_full"] > 0 and info["last_incremental"] >= info["last_full"]
    code, out = invoke("status", "-c", cfg)
    assert code == 0 and "last full sync" in out and "fresh" in out
    code, out = invoke("lookup", "-c", cfg, "A@Example.org", "--json")
    found = json.loads(out)
    assert (
        code == 0
        and found["dn"] == f"uid=alice,ou=people,{SUFFIX}"
        and found["lists"] == {"safe_senders": 1, "blocked_senders": 0, "safe_recipients": 0}
    )
    assert "partner.net" not in out and "sender" not in found
    code, out = invoke(
        "lookup", "-c", cfg, "alice@example.org", "--check-sender", "Bob@Partner.NET", "--json"
    )
    assert json.loads(out)["sender"] == {
        "address": "bob@partner.net",
        "safe_senders": True,
        "blocked_senders": False,
        "safe_recipients": False,
    }
    code, out = invoke("lookup", "-c", cfg, "alice@example.org", "--check-sender", "bob@other.net")
    assert code == 0 and "safe senders" in out and "1 entry; bob@other.net is not on it" in out
    code, out = invoke("lookup", "-c", cfg, "alice@example.org", "--check-sender", "nobody")
    assert code == 2 and "--check-sender" in out
    code, out = invoke("lookup", "-c", cfg, "alice@example.org")
    assert code == 0 and "uid=alice" in out
    for hostile in ("*)(uid=*@example.org", "*@example.org", "\x00@example.org"):
        code, out = invoke("lookup", "-c", cfg, hostile)
        assert code == 1 and "not in the replica" in out
    code, out = invoke("lookup", "-c", cfg, "no-at-sign")
    assert code == 2


def test_sync_guard_and_down_directory_exit_1_and_keep_the_replica(slapd: Slapd, tmp_path: Path) -> None:
    slapd.load(users_ldif(50))
    cfg = _config(tmp_path, slapd)
    assert invoke("sync", "-c", str(cfg))[0] == 0
    conn = slapd.admin()
    for i in range(20):
        conn.delete(f"uid=u{i},ou=people,{SUFFIX}")
    code, out = invoke("sync", "-c", str(cfg))
    assert code == 1 and "refused" in out and "--force" in out
    assert json.loads(invoke("status", "-c", str(cfg), "--json")[1])["counts"]["users"] == 50
    assert invoke("sync", "-c", str(cfg), "--force")[0] == 0
    slapd.stop()
    code, out = invoke("sync", "-c", str(cfg), "--full")
    assert code == 1 and "replica is unchanged" in out
    assert json.loads(invoke("status", "-c", str(cfg), "--json")[1])["counts"]["users"] == 30


def test_test_command_reports_and_writes_nothing(slapd: Slapd, tmp_path: Path) -> None:
    add_user(slapd.admin(), "alice", "alice@example.org")
    cfg = _config(tmp_path, slapd)
    code, out = invoke("test", "-c", str(cfg))
    assert code == 0, out
    assert "TLS: TLSv1." in out and "certificate verified" in out and "an entry found" in out
    assert not (tmp_path / "state").exists()
    bad = trustme.CA()
    other = tmp_path / "other.pem"
    bad.cert_pem.write_to_path(str(other))
    cfg.write_text(cfg.read_text().replace(str(slapd.ca_file), str(other)))
    code, out = invoke("test", "-c", str(cfg))
    assert code == 1 and "certificate verify failed" in out


def test_bad_password_files_are_refused(slapd: Slapd, tmp_path: Path) -> None:
    cfg = _config(tmp_path, slapd, password="")
    code, out = invoke("sync", "-c", str(cfg))
    assert code == 2 and "empty" in out
    (tmp_path / "bind.pw").write_text(SYNC_PW)
    (tmp_path / "bind.pw").chmod(0o644)
    code, out = invoke("test", "-c", str(cfg))
    assert code == 2 and "readable by others" in out
    (tmp_path / "bind.pw").chmod(0o600)
    (tmp_path / "bind.pw").write_text("wrong")
    code, out = invoke("test", "-c", str(cfg))
    assert code == 1 and "invalidCredentials" in out


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files over needs root")
def test_replica_written_by_root_belongs_to_the_service_user(slapd: Slapd, tmp_path: Path) -> None:
    try:
        user = pwd.getpwnam("edgeward")
    except KeyError:
        pytest.skip("no edgeward user (scripts/install-test-deps.sh creates it)")
    (tmp_path / "state").mkdir()
    os.chown(tmp_path / "state", user.pw_uid, user.pw_gid)
    add_user(slapd.admin(), "alice", "alice@example.org")
    assert invoke("sync", "-c", str(_config(tmp_path, slapd)))[0] == 0
    st = (tmp_path / "state" / "directory.db").stat()
    assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid) and st.st_mode & 0o777 == 0o640
