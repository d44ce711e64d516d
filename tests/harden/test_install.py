"""install-service into a scratch root, and the shipped unit as systemd-analyze judges it."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.config.load import load_config
from edgeward.harden.install import unit_text

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")


def _scratch_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        lines = Path("/etc", name).read_text().splitlines(keepends=True)
        (root / "etc" / name).write_text("".join(x for x in lines if not x.startswith("edgeward:")))
    return root


def test_dry_run_prints_every_action_and_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    result = CliRunner().invoke(app, ["install-service", "--dry-run", "--root", str(root)])
    assert result.exit_code == 0, result.output
    for path in ("etc/edgeward", "var/lib/edgeward", "var/spool/edgeward", "var/log/edgeward"):
        assert f"would: folder {root / path} " in result.output
    assert f"would: file {root}/etc/systemd/system/edgeward.service root:root 0644" in result.output
    assert "would: create system user edgeward" in result.output
    assert list(root.iterdir()) == []


@root_only
def test_install_builds_the_debian_layout(tmp_path: Path) -> None:
    root = _scratch_root(tmp_path)
    args = ["install-service", "--root", str(root), "--hostname", "mx.example.test"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    entry = next(x for x in (root / "etc/passwd").read_text().splitlines() if x.startswith("edgeward:"))
    uid, shell = int(entry.split(":")[2]), entry.split(":")[6]
    assert shell == "/usr/sbin/nologin" and uid < 1000
    expect = {
        "etc/edgeward": (0, 0o750), "etc/edgeward/edgeward.toml": (0, 0o640),
        "var/lib/edgeward": (uid, 0o750), "var/spool/edgeward": (uid, 0o750),
        "var/spool/edgeward/queue": (uid, 0o750), "var/log/edgeward": (uid, 0o750),
        "etc/systemd/system/edgeward.service": (0, 0o644),
    }  # fmt: skip
    for rel, (owner, mode) in expect.items():
        st = (root / rel).lstat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (owner, mode), rel
    assert os.readlink(root / "var/lib/edgeward/queue") == "/var/spool/edgeward/queue"
    config = load_config(root / "etc/edgeward/edgeward.toml")
    assert config.server.data_dir == Path("/var/lib/edgeward")
    assert config.logging.dir == Path("/var/log/edgeward")
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "nothing to do" in again.output


def _write_unit(tmp_path: Path) -> Path:
    unit_dir = tmp_path / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    path = unit_dir / "edgeward.service"
    path.write_text(unit_text(str(Path(sys.executable).parent / "edgeward")))
    return path


@needs_systemd
def test_shipped_unit_verifies(tmp_path: Path) -> None:
    path = _write_unit(tmp_path)
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@needs_systemd
def test_shipped_unit_rates_ok(tmp_path: Path) -> None:
    _write_unit(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", f"--root={tmp_path}", "edgeward.service"],
        capture_output=True, text=True,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for edgeward.service: ([\d.]+) (\w+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 2.5 and found.group(2) == "OK"


def test_unit_matches_how_the_gateway_starts() -> None:
    text = unit_text("/usr/bin/edgeward")
    assert "ExecStart=/usr/bin/edgeward serve -c /etc/edgeward/edgeward.toml" in text
    assert "User=edgeward" in text and "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n" in text
    writable = re.search(r"^ReadWritePaths=(.*)$", text, re.M)
    assert writable and set(writable.group(1).split()) == {
        "/var/spool/edgeward", "/var/lib/edgeward", "/var/log/edgeward",
    }  # fmt: skip
