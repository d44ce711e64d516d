"""``edgeward av update`` against real freshclam, a mirror on loopback and a real clamd.

The official databases are signed by ClamAV and cannot be built here, so the mirror serves
custom unsigned databases (``DatabaseCustomURL``) and ``official_databases`` is off; every
other line of the generated freshclam configuration is what production uses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.config.load import load_config
from edgeward.ports import ScanItem
from edgeward.scanning.clamd import ClamdScanner
from edgeward.scanning.updates import (
    changes,
    database_directory,
    freshclam_config,
    run_updates,
    signature_status,
    snapshot,
)
from tests.scanning.clamd import CLAMD, STREAM_MAX, Clamd, start_clamd
from tests.scanning.mirror import Mirror

FRESHCLAM = shutil.which("freshclam")
NEW_PATTERN = b"EDGEWARD-NEWLY-PUBLISHED-" + b"SIGNATURE-7f3a"
NEW_NAME = "Edgeward-New-Signature"
runner = CliRunner()


def ndb(name: str, pattern: bytes) -> str:
    return f"{name}:0:*:{pattern.hex()}\n"


def test_freshclam_configuration_for_a_private_mirror() -> None:
    conf = freshclam_config(
        Path("/var/lib/clamav"), "clamav", "http://mirror.lan", ["http://mirror.lan/site.ndb"], official=False
    )
    lines = conf.splitlines()
    for line in (
        "DatabaseDirectory /var/lib/clamav",
        "DatabaseOwner clamav",
        "PrivateMirror http://mirror.lan",
        "DatabaseCustomURL http://mirror.lan/site.ndb",
        "DNSDatabaseInfo no",
        "ScriptedUpdates no",
        "ExcludeDatabase daily",
    ):
        assert line in lines
    default = freshclam_config(Path("/db"), "clamav", "", [])
    assert "DatabaseMirror database.clamav.net" in default and "ExcludeDatabase" not in default


def test_urls_cannot_add_lines_to_the_freshclam_configuration(tmp_path: Path) -> None:
    config = tmp_path / "edgeward.toml"
    config.write_text("[antivirus.updates]\nmirror = 'http://x/\\nNotifyClamd /etc/evil'\n")
    code = runner.invoke(app, ["av", "update", "-c", str(config)]).exit_code
    assert code == 2


def test_database_directory_comes_from_clamd_conf(tmp_path: Path) -> None:
    conf = tmp_path / "clamd.conf"
    conf.write_text("# comment\nLocalSocket /run/x\nDatabaseDirectory /srv/clamav db\n")
    assert database_directory(conf) == Path("/srv/clamav db")
    assert database_directory(tmp_path / "missing.conf") == Path("/var/lib/clamav")


def test_what_changed_reads_cvd_versions(tmp_path: Path) -> None:
    def cvd(version: int, stime: int) -> bytes:
        header = f"ClamAV-VDB:01 Dec 2026 10-00 +0000:{version}:100:90:md5:dsig:builder:{stime}".encode()
        return header.ljust(512, b" ")

    (tmp_path / "daily.cvd").write_bytes(cvd(27000, 1_800_000_000))
    (tmp_path / "old.ndb").write_text("x")
    (tmp_path / "freshclam.dat").write_text("bookkeeping")
    before = snapshot(tmp_path)
    assert before["daily.cvd"].version == "27000" and before["daily.cvd"].built == 1_800_000_000
    assert "freshclam.dat" not in before
    (tmp_path / "daily.cvd").write_bytes(cvd(27001, 1_800_086_400))
    (tmp_path / "old.ndb").unlink()
    (tmp_path / "new.hsb").write_text("y")
    assert changes(before, snapshot(tmp_path)) == [
        "updated daily.cvd (27000 -> 27001)",
        "added new.hsb",
        "removed old.ndb",
    ]


@pytest.fixture
def clamd(tmp_path: Path) -> Iterator[Clamd]:
    # One per test: each test's updates change this clamd's database folder.
    if CLAMD is None or FRESHCLAM is None:
        pytest.skip("clamd/freshclam are not installed (scripts/install-test-deps.sh)")
    server = start_clamd(tmp_path / "clamd")
    yield server
    server.stop()


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    served = Mirror(tmp_path / "mirror")
    yield served
    served.close()


def write_config(tmp_path: Path, clamd: Clamd, mirror: Mirror, *, extra: str = "") -> Path:
    (tmp_path / "yara").mkdir(exist_ok=True)
    (tmp_path / "yara" / "site.yar").write_text('rule Site { strings: $a = "SITE-RULE" condition: $a }\n')
    (tmp_path / "hashes.txt").write_text(f"{'a' * 64} Known.Bad\n")
    path = tmp_path / "edgeward.toml"
    path.write_text(
        f"accepted_domains = ['example.test']\n[server]\ndata_dir = '{tmp_path}'\n"
        "[antivirus]\nenabled = true\n"
        f"[antivirus.clamd]\nsocket = '{clamd.socket}'\nmax_stream = {STREAM_MAX}\n"
        "[antivirus.office]\nenabled = false\n"
        "[antivirus.yara]\nenabled = true\nrules_dir = 'yara'\n"
        "[antivirus.hashes]\nfile = 'hashes.txt'\n"
        f"[antivirus.updates]\nclamd_conf = '{clamd.root / 'clamd.conf'}'\nmirror = '{mirror.url}'\n"
        f"custom_urls = ['{mirror.url}/site.ndb']\nofficial_databases = false\n{extra}"
    )
    return path


def update(config: Path) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, ["av", "update", "-c", str(config), "--json"])
    return result.exit_code, json.loads(result.output)


async def detected(clamd: Clamd, data: bytes) -> list[str]:
    """What clamd finds in ``data``, asked until the reload it was told about has finished."""
    scanner = ClamdScanner(str(clamd.socket), timeout=30)
    for _ in range(600):  # clamd swaps the new databases in when it has loaded them
        hits = await scanner.scan([ScanItem(data, "1")])
        if hits:
            return [h.signature for h in hits]
        await asyncio.sleep(0.1)
    return []


def test_update_fetches_a_new_database_reloads_clamd_and_clamd_detects_it(
    tmp_path: Path, clamd: Clamd, mirror: Mirror
) -> None:
    config = write_config(tmp_path, clamd, mirror)
    scanner = ClamdScanner(str(clamd.socket))
    assert asyncio.run(scanner.scan([ScanItem(NEW_PATTERN, "1")])) == []
    mirror.publish("site.ndb", ndb(NEW_NAME, NEW_PATTERN))

    code, report = update(config)
    assert code == 0, report
    assert report["ok"] and report["freshclam_code"] == 0
    assert report["changed"] == ["added site.ndb"]
    assert report["clamd"] == "RELOADING"
    assert report["engines"] == {"yara": "reloaded", "hashlist": "reloaded"}
    assert report["sizes"] == {"yara": "1 rules", "hashlist": "1 hashes"}
    assert "/site.ndb" in mirror.requests
    assert asyncio.run(detected(clamd, NEW_PATTERN)) == [f"{NEW_NAME}.UNOFFICIAL"]

    # Nothing new on the mirror: nothing changes and clamd is left alone.
    code, report = update(config)
    assert code == 0 and report["changed"] == [] and report["clamd"] == "unchanged, not reloaded"

    # A newer database replaces it; clamd detects the new signature and no longer the old one.
    newer = b"EDGEWARD-SECOND-" + b"GENERATION-91c2"
    mirror.publish("site.ndb", ndb("Edgeward-Second", newer), age=-120)
    code, report = update(config)
    assert code == 0 and report["changed"] == ["updated site.ndb"] and report["clamd"] == "RELOADING"
    assert asyncio.run(detected(clamd, newer)) == ["Edgeward-Second.UNOFFICIAL"]
    assert asyncio.run(scanner.scan([ScanItem(NEW_PATTERN, "1")])) == []

    # av status shows the signatures row: the last update, healthy.
    result = runner.invoke(app, ["av", "status", "-c", str(config), "--json"])
    rows = {r["engine"]: r for r in json.loads(result.output)["engines"]}
    assert rows["signatures"]["healthy"] and "ok" in rows["signatures"]["detail"]
    assert {"clamd", "yara", "hashlist"} <= set(rows)


def test_progress_and_summary_are_printed(tmp_path: Path, clamd: Clamd, mirror: Mirror) -> None:
    config = write_config(tmp_path, clamd, mirror)
    mirror.publish("site.ndb", ndb("Edgeward-Printed", b"EDGEWARD-PRINTED-" + b"x1"))
    result = runner.invoke(app, ["av", "update", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert f"freshclam ({mirror.url}): exit 0" in result.output
    assert "yara: reloaded, 1 rules" in result.output and "hashlist: reloaded, 1 hashes" in result.output
    assert "signatures: newest is" in result.output


def test_an_unreachable_mirror_fails_loudly_and_av_status_says_so(tmp_path: Path, clamd: Clamd) -> None:
    dead = Mirror(tmp_path / "dead")
    dead.close()  # its port now refuses connections
    config = write_config(tmp_path, clamd, dead)
    code, report = update(config)
    assert code == 1
    assert not report["ok"] and report["freshclam_code"] not in (0, None) and report["errors"]
    result = runner.invoke(app, ["av", "status", "-c", str(config), "--json"])
    assert result.exit_code == 1
    row = {r["engine"]: r for r in json.loads(result.output)["engines"]}["signatures"]
    assert not row["healthy"] and "FAILED" in row["detail"]


def test_a_broken_yara_rule_fails_the_update(tmp_path: Path, clamd: Clamd, mirror: Mirror) -> None:
    config = write_config(tmp_path, clamd, mirror)
    (tmp_path / "yara" / "broken.yar").write_text("rule Broken {")
    mirror.publish("site.ndb", ndb("Edgeward-Any", b"EDGEWARD-ANY-" + b"x2"))
    code, report = update(config)
    assert code == 1 and report["engines"]["yara"].startswith("reload failed")


def test_stale_signatures_raise_the_alarm(
    tmp_path: Path, clamd: Clamd, mirror: Mirror, caplog: pytest.LogCaptureFixture
) -> None:
    config_path = write_config(tmp_path, clamd, mirror, extra="max_signature_age = '1d'\ninterval = '1h'\n")
    db = clamd.root / "db"
    # Every database and the mirror's copy ten days old: freshclam finds nothing newer.
    mirror.publish("site.ndb", ndb("Edgeward-Old", b"EDGEWARD-OLD-" + b"x3"), age=20 * 86400)
    old = time.time() - 10 * 86400
    config = load_config(config_path)

    async def one_round() -> None:
        task = asyncio.create_task(run_updates(lambda: config, lambda: []))
        state = tmp_path / "state" / "av-update.json"
        for _ in range(1200):  # the round ends when it has written its record
            if state.exists():
                break
            await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    # The first round may fetch the mirror's copy; age everything after it and run again.
    asyncio.run(one_round())
    for f in db.iterdir():
        os.utime(f, (old, old))
    (tmp_path / "state" / "av-update.json").unlink()
    with caplog.at_level(logging.ERROR, logger="edgeward.scanning.updates"):
        asyncio.run(one_round())
    assert any("ALARM: anti-virus signatures are stale" in r.getMessage() for r in caplog.records)
    status = signature_status(config)
    assert status is not None and status.signatures_at is not None
    assert time.time() - status.signatures_at > 86400
    result = runner.invoke(app, ["av", "status", "-c", str(config_path), "--json"])
    row = {r["engine"]: r for r in json.loads(result.output)["engines"]}["signatures"]
    assert row["stale"] and not row["healthy"]
    assert result.exit_code == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership only changes when running as root")
def test_the_record_written_as_root_belongs_to_the_service(tmp_path: Path) -> None:
    import pwd

    from edgeward.scanning.updates import UpdateReport, load_report, save_report

    try:
        service = pwd.getpwnam("edgeward")
    except KeyError:
        pytest.skip("no 'edgeward' user")
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, service.pw_uid, service.pw_gid)
    config_file = tmp_path / "edgeward.toml"
    config_file.write_text(f"[server]\ndata_dir = '{data}'\n")
    config = load_config(config_file)
    save_report(config, UpdateReport(started=time.time(), ok=True, changed=["added site.ndb"]))
    record = data / "state" / "av-update.json"
    assert record.stat().st_uid == service.pw_uid and record.parent.stat().st_uid == service.pw_uid
    assert (load_report(config) or {})["changed"] == ["added site.ndb"]
