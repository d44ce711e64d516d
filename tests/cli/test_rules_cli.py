"""``edgeward rules list`` and ``rules test`` against a configuration file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edgeward.cli.main import app

CONFIG = """accepted_domains = ["example.test"]
[server]
data_dir = "{data}"
[[rules]]
name = "disclaimer"
priority = 2
conditions = {{ direction = "outbound" }}
[rules.actions]
disclaimer = {{ text = "Confidential." }}
prepend_subject = "[OUT]"
bcc = ["audit@example.test"]
[[rules]]
name = "no-invoices"
priority = 1
conditions = {{ subject_matches = "invoice" }}
actions = {{ reject = {{ text = "Invoices go to the portal" }} }}
"""


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    cfg = tmp_path / "edgeward.toml"
    cfg.write_text(CONFIG.format(data=tmp_path / "data"))
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"From: a@example.test\nSubject: hello\n\nhi there\n")
    return cfg, msg


def test_list_in_evaluation_order(tmp_path: Path) -> None:
    cfg, _ = _setup(tmp_path)
    result = CliRunner().invoke(app, ["rules", "list", "-c", str(cfg), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["order"], r["name"]) for r in rows] == [(1, "no-invoices"), (2, "disclaimer")]
    assert rows[1]["conditions"] == {"direction": "outbound"}
    assert rows[0]["actions"]["reject"]["text"] == "Invoices go to the portal"


def test_test_shows_matches_changes_and_refusals(tmp_path: Path) -> None:
    cfg, msg = _setup(tmp_path)
    args = ["rules", "test", str(msg), "-c", str(cfg), "--json", "--direction", "outbound",
            "--sender", "a@example.test", "--recipient", "b@remote.test", "--show"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [m["name"] for m in report["matched"]] == ["disclaimer"]
    assert report["recipients"] == ["b@remote.test", "audit@example.test"]
    assert "Subject: [OUT] hello" in report["message"] and "Confidential." in report["message"]
    msg.write_bytes(b"From: a@remote.test\nSubject: Invoice 12\n\npay\n")
    refused = CliRunner().invoke(app, ["rules", "test", str(msg), "-c", str(cfg), "--json"])
    assert refused.exit_code == 1
    assert json.loads(refused.output)["reply"] == "550 5.7.1 Invoices go to the portal"


AUDIT = """
[[rules]]
name = "audit"
priority = 3
conditions = {{ subject_contains = ["hello"] }}
actions = {{ log_event_text = "Greeting sent", copy_to = ["records@example.test"] }}
"""


def test_log_event_text_and_copy_to_in_list_and_test(tmp_path: Path) -> None:
    cfg, msg = _setup(tmp_path)
    cfg.write_text(cfg.read_text() + AUDIT.format())
    rows = json.loads(CliRunner().invoke(app, ["rules", "list", "-c", str(cfg), "--json"]).output)
    assert rows[2]["actions"] == {"copy_to": ["records@example.test"], "log_event_text": "Greeting sent"}
    table = CliRunner().invoke(app, ["rules", "list", "-c", str(cfg)], env={"COLUMNS": "300"}).output
    assert "log_event_text" in table and "copy_to" in table
    args = ["rules", "test", str(msg), "-c", str(cfg), "--recipient", "b@example.test", "--show"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["logged"] == ["audit: Greeting sent"]
    assert report["copied"] == ["audit: records@example.test"]
    assert report["recipients"] == ["b@example.test", "records@example.test"]
    assert "Cc: records@example.test" in report["message"]
    text = CliRunner().invoke(app, args).output
    assert "logged: audit: Greeting sent" in text and "copied (Cc): audit: records@example.test" in text
