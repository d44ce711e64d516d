"""``edgeward quarantine`` search, show, export, purge and digest: output, escaping, bad input."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.quarantine import quarantine_app
from edgeward.logs.tracking import search
from edgeward.quarantine.entry import HeldFinding
from edgeward.quarantine.store import QuarantineEntry, QuarantineStore

BODY = b"From: a@remote.test\r\nSubject: offer\r\n\r\nbuy now\r\n"
runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text(
        f'accepted_domains = ["example.test"]\n[server]\ndata_dir = "{tmp_path / "data"}"\n'
        "[queue]\nfsync = false\n"
    )
    return path


def put(tmp_path: Path, subject: str, *findings: str, data: bytes = BODY) -> str:
    entry = QuarantineEntry(
        "", "a@remote.test", ("u@example.test",), "antivirus", subject=subject, findings=findings,
        details=tuple(HeldFinding(f, "antivirus") for f in findings),
    )  # fmt: skip
    return QuarantineStore(tmp_path / "data" / "quarantine", fsync=False).put(entry, data)


def run(config: Path, *args: str, code: int = 0) -> str:
    r = runner.invoke(quarantine_app, [args[0], "-c", str(config), *args[1:]])
    assert r.exit_code == code, r.output
    return r.output


def test_search_prints_json_and_a_table_with_mail_text_escaped(config: Path, tmp_path: Path) -> None:
    qid = put(tmp_path, "hi\x1b[31m [bold]red[/bold]", "AV_INFECTED")
    put(tmp_path, "other")
    [found] = json.loads(run(config, "search", "--finding", "av_infected", "--json"))
    assert found["qid"] == qid and found["details"][0]["name"] == "AV_INFECTED"
    table = run(config, "search", "--subject", "hi")
    assert "\x1b" not in table and "\\x1b[31m [bold]red[/bold]" in table.replace("\n", "")
    assert "1 message(s)" in table
    assert "2 message(s)" in run(config, "list")
    assert json.loads(run(config, "search", "--since", "1h", "--until", "2000-01-01", "--json")) == []
    assert "neither an ISO date" in run(config, "search", "--since", "yesterday-ish", code=2)


def test_show_json_escapes_and_unknown_ids_are_exit_2(config: Path, tmp_path: Path) -> None:
    hostile = b"Subject: a\r\n =?utf-8?q?b=0D=0AX-Injected:_1?=\r\n\r\n<script>\x07</script>\r\n"
    qid = put(tmp_path, "x", data=hostile)
    shown = json.loads(run(config, "show", qid, "--json"))
    assert shown["headers"] == [["Subject", "a b\\x0d\\x0aX-Injected: 1"]]
    assert shown["texts"][0]["text"] == "<script>\\x07</script>\n"
    assert "\x07" not in run(config, "show", qid)
    assert "no quarantined message" in run(config, "show", "0123456789abc", code=2)
    assert "no quarantined message" in run(config, "release", "../../etc/passwd", code=2)


def test_export_writes_a_new_private_file_and_refuses_to_overwrite(config: Path, tmp_path: Path) -> None:
    qid = put(tmp_path, "x")
    out = tmp_path / "x.eml"
    run(config, "export", qid, "-o", str(out))
    assert out.read_bytes() == BODY and out.stat().st_mode & 0o777 == 0o600
    assert "cannot create" in run(config, "export", qid, "-o", str(out), code=2)
    assert runner.invoke(quarantine_app, ["export", "-c", str(config), qid]).stdout_bytes == BODY


def test_release_to_a_stranger_is_refused(config: Path, tmp_path: Path) -> None:
    qid = put(tmp_path, "x")
    assert "not a recipient" in run(config, "release", qid, "--to", "mallory@evil.test", "--no-learn", code=2)


def test_purge_needs_a_criterion_and_tracks_each_removal(config: Path, tmp_path: Path) -> None:
    keep = put(tmp_path, "keep")
    doomed = {put(tmp_path, f"virus {n}", "AV_INFECTED") for n in range(3)}
    assert "give a criterion" in run(config, "purge", code=2)
    assert "purged 3 message(s)" in run(config, "purge", "--finding", "AV_INFECTED")
    assert [e["qid"] for e in json.loads(run(config, "list", "--json"))] == [keep]
    assert {e["msg_id"] for e in search(tmp_path / "data" / "log", event="REMOVE")} == doomed
    assert "purged 0 expired" in run(config, "purge", "--expired")
    assert "purged 1 message(s)" in run(config, "purge", "--all")


def test_digest_dry_run_lists_and_sends_nothing(config: Path, tmp_path: Path) -> None:
    put(tmp_path, "held", "AV_INFECTED")
    out = run(config, "digest", "--dry-run")
    assert "u@example.test: 1 message(s)" in out and "1 digest(s) would be sent" in out
    assert not (tmp_path / "data" / "queue").exists() or not any((tmp_path / "data" / "queue").rglob("*.eml"))
    assert "exclude each other" in run(config, "digest", "--send", "--dry-run", code=2)


def test_digest_and_encryption_as_root_leave_their_files_to_the_service_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    user = pwd.getpwnam("edgeward")
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, user.pw_uid, user.pw_gid)
    config = tmp_path / "edgeward.toml"
    config.write_text(
        f'accepted_domains = ["example.test"]\n[server]\ndata_dir = "{data}"\n[queue]\nfsync = false\n'
        '[quarantine]\nencryption_key_file = "keys/quarantine.key"\n'
        'release_link_base = "https://q.example.test/release"\n'
    )
    # Held before encryption was turned on, so the command is the first to need the key.
    store = QuarantineStore(data / "quarantine", fsync=False)
    store.put(QuarantineEntry("", "a@remote.test", ("u@example.test",), "x"), BODY)
    for path in data.rglob("*"):
        os.chown(path, user.pw_uid, user.pw_gid)
    assert "1 digest(s) queued" in run(config, "digest", "--send")
    assert [p for p in data.rglob("*") if p.lstat().st_uid == 0] == []
    for name in ("keys/quarantine.key", "state/quarantine-release.key"):
        assert (data / name).stat().st_mode & 0o777 == 0o600
