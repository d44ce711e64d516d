"""The command line is consistent: where -c/--config goes, --json on listings, --version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from edgeward import __version__
from edgeward.cli.main import app
from edgeward.content.classifier import SpamClassifier
from edgeward.content.state import SqliteModelStateStore

runner = CliRunner()
DATA = Path(__file__).resolve().parents[1] / "content" / "data"
# Commands that work on files named on the command line, not on a gateway's configuration.
WITHOUT_CONFIG = {"init", "install-service", "spam train", "spam eval"}
# Commands that print listings, and so owe scripts a --json.
LISTINGS = {
    "agents list", "cert list", "queue list", "queue show", "quarantine list", "quarantine search",
    "quarantine show", "spam classify",
    "spam eval", "track", "user list",
    "antispam ip allow list", "antispam ip block list", "antispam test-ip",
    "harden analyse", "harden history", "harden template list", "web user list", "web token list",
}  # fmt: skip


def _leaves(command: Any, path: str = "") -> dict[str, Any]:
    children = getattr(command, "commands", None)
    if not children:
        return {path: command}
    found: dict[str, Any] = {}
    for name, child in children.items():
        found |= _leaves(child, f"{path} {name}".strip())
    if getattr(command, "invoke_without_command", False):
        found[path] = command  # a group that is itself a command (track)
    return found


def _options(command: Any) -> set[str]:
    return {opt for param in command.params for opt in param.opts}


LEAVES = _leaves(typer.main.get_command(app))


def test_every_command_that_reads_a_configuration_takes_c_after_its_name() -> None:
    without = {path for path, cmd in LEAVES.items() if not {"-c", "--config"} <= _options(cmd)}
    assert without == WITHOUT_CONFIG
    assert "queue list" in LEAVES and "cert renew-due" in LEAVES  # the walk reached the groups


def test_every_listing_has_json() -> None:
    assert LEAVES.keys() >= LISTINGS
    assert [path for path in sorted(LISTINGS) if "--json" not in _options(LEAVES[path])] == []


def test_version_alone_prints_the_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert (result.exit_code, result.stdout) == (0, f"{__version__}\n")
    out = subprocess.run(
        [sys.executable, "-m", "edgeward", "--version"], capture_output=True, text=True, check=False
    )
    assert (out.returncode, out.stdout.strip()) == (0, __version__)


def test_no_command_prints_help_not_an_error() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output and "queue" in result.output
    assert "Missing command" not in result.output


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text('accepted_domains = ["example.org"]\n[server]\ndata_dir = "."\n')
    return path


def _certs(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, Any, str]:
    result = runner.invoke(app, ["cert", *args], env={"EDGEWARD_TLS_STORE": None, **(env or {})})
    doc = json.loads(result.stdout) if result.exit_code == 0 and "--json" in args else result.stdout
    return result.exit_code, doc, result.stderr


def test_cert_takes_config_after_and_before_the_sub_command(config_path: Path, tmp_path: Path) -> None:
    code, out, _ = _certs("new", "mx.example.org", "-c", str(config_path))
    assert code == 0
    thumbprint = out.strip()
    assert (tmp_path / "tls").is_dir()  # the configuration's store: data_dir/tls
    for args in (["list", "--json", "-c", str(config_path)], ["-c", str(config_path), "list", "--json"]):
        code, doc, err = _certs(*args)
        assert code == 0, err
        assert [c["thumbprint"] for c in doc["certificates"]] == [thumbprint]
    code, doc, _ = _certs("list", "--json", "--store", str(tmp_path / "tls"))
    assert [c["thumbprint"] for c in doc["certificates"]] == [thumbprint]


def test_cert_config_after_the_sub_command_beats_the_environment(config_path: Path, tmp_path: Path) -> None:
    _certs("new", "mx.example.org", "-c", str(config_path))
    elsewhere = str(tmp_path / "other-store")
    code, doc, _ = _certs("list", "--json", "-c", str(config_path), env={"EDGEWARD_TLS_STORE": elsewhere})
    assert code == 0 and len(doc["certificates"]) == 1
    code, doc, _ = _certs("list", "--json", env={"EDGEWARD_TLS_STORE": elsewhere})
    assert code == 0 and doc["certificates"] == []


def test_cert_refuses_store_and_config_together(config_path: Path, tmp_path: Path) -> None:
    code, _, err = _certs("list", "--store", str(tmp_path / "tls"), "-c", str(config_path))
    assert code == 2 and "not both" in err


def test_cert_without_store_or_config_reads_the_default_configuration(tmp_path: Path) -> None:
    if Path("/etc/edgeward/edgeward.toml").exists():
        pytest.skip("this host has a real configuration")
    code, _, err = _certs("list")
    assert code == 2 and "/etc/edgeward/edgeward.toml" in err


def test_spam_classify_with_config_rates_with_the_live_model(config_path: Path, tmp_path: Path) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes((DATA / "ham.eml").read_bytes())
    shipped = runner.invoke(app, ["spam", "classify", "--json", str(message)])
    assert shipped.exit_code == 0, shipped.output
    state = tmp_path / "state" / "content-model.db"
    with SqliteModelStateStore(state) as store:
        classifier = SpamClassifier.load(store=store)
        for _ in range(5):
            classifier.learn(message.read_bytes(), is_spam=True)
    live = runner.invoke(app, ["spam", "classify", "--json", str(message), "-c", str(config_path)])
    assert live.exit_code == 0, live.output
    assert json.loads(live.stdout)["probability"] > json.loads(shipped.stdout)["probability"]
