"""``edgeward av status`` and ``av test`` against a real clamd."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from tests.scanning.builders import EXE, message
from tests.scanning.clamd import CLAMD, EICAR, STREAM_MAX, Clamd, start_clamd

runner = CliRunner()


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    if CLAMD is None:
        pytest.skip("clamd is not installed (scripts/install-test-deps.sh)")
    server = start_clamd(tmp_path_factory.mktemp("clamd"))
    yield server
    server.stop()


def _config(tmp_path: Path, socket: str, extra: str = "") -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text(
        f"accepted_domains = ['example.test']\n[server]\ndata_dir = '{tmp_path}'\n"
        f"[antivirus]\nenabled = true\n{extra}\n"
        f"[antivirus.clamd]\nsocket = '{socket}'\nmax_stream = {STREAM_MAX}\n"
        # clamd alone: the Office analysis (on by default) has its own tests in tests/scanning.
        "[antivirus.office]\nenabled = false\n"
    )
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["av", *args])
    return result.exit_code, result.output


def test_status_shows_clamd_healthy_with_its_version(tmp_path: Path, clamd: Clamd) -> None:
    config = _config(tmp_path, str(clamd.socket))
    code, out = invoke("status", "-c", str(config), "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert shown["enabled"] is True and shown["require"] == "all"
    [engine] = shown["engines"]
    assert engine["engine"] == "clamd" and engine["healthy"] is True
    assert engine["version"].startswith("ClamAV ") and engine["signatures_at"] is None
    code, out = invoke("status", "-c", str(config))
    assert code == 0 and "clamd" in out and "ClamAV" in out and "age unknown" in out


def test_status_of_a_down_engine_exits_1(tmp_path: Path) -> None:
    config = _config(tmp_path, str(tmp_path / "nobody.sock"))
    code, out = invoke("status", "-c", str(config), "--json")
    assert code == 1
    [engine] = json.loads(out)["engines"]
    assert engine["healthy"] is False and "unreachable" in engine["detail"]


def test_test_reports_a_virus_in_a_message_with_the_reply(tmp_path: Path, clamd: Clamd) -> None:
    config = _config(tmp_path, str(clamd.socket))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("eicar.com", EICAR)
    eml = tmp_path / "infected.eml"
    eml.write_bytes(message(("invoice.zip", buf.getvalue(), "application/zip")))
    code, out = invoke("test", str(eml), "-c", str(config), "--json")
    assert code == 1, out
    result = json.loads(out)
    assert result["action"] == "reject"
    assert result["reply"].startswith("550 5.7.1 Virus found: Edgeward-Eicar-")
    assert "(2/invoice.zip)" in result["reply"]
    # Both would act; the anti-virus agent runs first, so its reply is the answer.
    found = [(f["by"], f["name"]) for f in result["findings"]]
    assert found == [("antivirus", "AV_INFECTED"), ("attachment-filter", "ATTACH_BLOCKED")]
    assert "2/invoice.zip!eicar.com" in [i["path"] for i in result["items"]]


def test_test_scans_a_bare_file_as_an_attachment(tmp_path: Path, clamd: Clamd) -> None:
    config = _config(tmp_path, str(clamd.socket))
    sample = tmp_path / "eicar.com"
    sample.write_bytes(EICAR)
    code, out = invoke("test", str(sample), "-c", str(config))
    assert code == 1 and "AV_INFECTED" in out and "550 5.7.1 Virus found" in out
    clean = tmp_path / "notes.txt"
    clean.write_bytes(b"just some notes\n")
    code, out = invoke("test", str(clean), "-c", str(config), "--json")
    assert code == 0 and json.loads(out)["findings"] == [] and json.loads(out)["scanned"] is True


def test_test_shows_the_walks_structural_findings(tmp_path: Path, clamd: Clamd) -> None:
    config = _config(tmp_path, str(clamd.socket))
    eml = tmp_path / "disguised.eml"
    eml.write_bytes(message(("report.pdf", EXE, "application/pdf")))
    code, out = invoke("test", str(eml), "-c", str(config), "--json")
    found = [(f["by"], f["name"]) for f in json.loads(out)["findings"]]
    assert ("attachment-filter", "ATTACH_TYPE_MISMATCH") in found
    assert ("attachment-filter", "ATTACH_BLOCKED") in found  # a program by its true type
    assert code == 0, out  # stripped by default, the rest delivered
    config = _config(tmp_path, str(clamd.socket), extra="[attachments]\nenabled = false\n")
    code, out = invoke("test", str(eml), "-c", str(config), "--json")
    assert ("walk", "ATTACH_TYPE_MISMATCH") in [(f["by"], f["name"]) for f in json.loads(out)["findings"]]


def test_test_with_clamd_down_says_it_could_not_scan(tmp_path: Path) -> None:
    config = _config(tmp_path, str(tmp_path / "nobody.sock"))
    sample = tmp_path / "a.txt"
    sample.write_bytes(b"hello\n")
    code, out = invoke("test", str(sample), "-c", str(config), "--json")
    assert code == 3
    assert json.loads(out)["reply"].startswith("451 4.7.0 Virus scanner unavailable")


def test_test_of_a_missing_file_is_bad_input(tmp_path: Path) -> None:
    config = _config(tmp_path, str(tmp_path / "nobody.sock"))
    code, out = invoke("test", str(tmp_path / "missing.eml"), "-c", str(config))
    assert code == 2 and "cannot read" in out
