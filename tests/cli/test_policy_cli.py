"""The policy layer on the command line: agents list, config show --defaults, track --id."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.config.schema import AGENT_NAMES, LoggingConfig
from edgeward.config.scores import SCORE_TABLE
from edgeward.logs.tracking import TrackingLog
from edgeward.state.policy import SqlitePolicyStore
from edgeward.types import Finding

runner = CliRunner()


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text(f"accepted_domains = ['example.test']\n[server]\ndata_dir = '{tmp_path}'\n{extra}")
    return path


def test_agents_list_prints_order_stages_exemptible_thresholds_and_the_score_table(tmp_path: Path) -> None:
    path = _config(tmp_path, "[scores]\nSPF_FAIL = 4.5\n[policy]\nstamp = 4\n")
    text = runner.invoke(app, ["agents", "list", "-c", str(path)])
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert lines[0].split()[:4] == ["1.", "back-pressure", "hard", "[mail]"]
    assert any(line.split()[1:4] == ["content-filter", "anti-spam", "[eod]"] for line in lines)
    assert (
        "thresholds (total score -> action): discard off, reject 7, tempfail off, quarantine off, stamp 4"
        in lines
    )
    spf = next(line for line in lines if line.strip().startswith("SPF_FAIL "))
    assert spf.split()[1] == "4.5*"
    doc = json.loads(runner.invoke(app, ["agents", "list", "--json", "-c", str(path)]).output)
    assert {a["name"]: a["exemptible"] for a in doc["agents"]}["content-filter"] is True
    assert doc["scores"]["SPF_FAIL"]["weight"] == 4.5 and set(doc["scores"]) == set(SCORE_TABLE)
    assert doc["thresholds"]["stamp"] == 4.0


def test_config_show_defaults_prints_every_weight_and_threshold_with_its_meaning() -> None:
    result = runner.invoke(app, ["config", "show", "--defaults"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["scores"]["SCL_7"] == {"default": 5.0, "description": SCORE_TABLE["SCL_7"].description}
    assert set(doc["scores"]) == set(SCORE_TABLE)
    for name in ("stamp", "quarantine", "reject", "discard", "tempfail"):
        assert doc["policy"][name]["description"]


def test_an_unknown_score_name_is_a_configuration_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "check", "-c", str(_config(tmp_path, "[scores]\nSPF_FALE = 1\n"))])
    assert result.exit_code == 2 and "unknown finding name(s) SPF_FALE" in result.output


def test_track_by_id_shows_the_findings_and_the_rule(tmp_path: Path) -> None:
    log = TrackingLog(tmp_path / "log", LoggingConfig())
    findings = [
        Finding("SPF_FAIL", "spf", "", 3.0, "mail"),
        Finding("SCL_5", "content-filter", "", 5.0, "eod"),
    ]
    log.event("REJECT", msg_id="01Q", sender="s@remote.test", reply="550 5.7.1 spam", findings=findings,
              decided_by="threshold reject 7 (total 8)")  # fmt: skip
    log.close()
    result = runner.invoke(
        app, ["track", "--id", "01Q", "--log-dir", str(tmp_path / "log")], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    assert "SPF_FAIL=3, SCL_5=5; threshold reject 7 (total 8)" in result.output
    missing = runner.invoke(app, ["track", "why", "01X", "--log-dir", str(tmp_path / "log")])
    assert missing.exit_code == 2 and "no verdict for 01X" in missing.output


def test_agents_list_without_a_policy_store_shows_the_store_backed_agents_in_their_place(
    tmp_path: Path,
) -> None:
    path = _config(tmp_path, "[agents.greylist]\nenabled = true\n")
    text = runner.invoke(app, ["agents", "list", "-c", str(path)])
    assert text.exit_code == 0, text.output
    listed = [line.split()[1] for line in text.stdout.splitlines() if line[:3].strip().endswith(".")]
    # In the pipeline's own order, nothing left out.
    # local-recipients, antivirus and transport-rules are off unless configured (antivirus needs
    # an engine, transport-rules a rule).
    assert listed == [n for n in AGENT_NAMES if n not in ("local-recipients", "antivirus", "transport-rules")]
    store = tmp_path / "state" / "policy.db"
    for name in ("rate-limits", "safe-senders", "sender-reputation", "greylisting"):
        line = next(line for line in text.stdout.splitlines() if f" {name} " in line)
        assert f"(off: no policy store at {store}; `serve` creates it)" in line
    assert "phishing (PCL -> action): reject off, quarantine 7" in text.stdout
    doc = json.loads(runner.invoke(app, ["agents", "list", "--json", "-c", str(path)]).stdout)
    assert doc["policy_store"] == {"backend": "sqlite", "path": str(store), "present": False}
    rows = {a["name"]: a for a in doc["agents"]}
    assert [a["name"] for a in doc["agents"]] == listed
    assert rows["greylisting"]["off"] == "no policy store" and rows["greylisting"]["needs_policy_store"]
    assert rows["sender-filter"]["off"] is None
    assert rows["sender-filter"]["off_without_store"] == "live sender block list"
    assert doc["pcl_thresholds"] == {"reject": None, "quarantine": 7}


def test_agents_list_with_the_policy_store_marks_nothing_off(tmp_path: Path) -> None:
    path = _config(tmp_path, "")
    (tmp_path / "state").mkdir()
    asyncio.run(_create_store(tmp_path / "state" / "policy.db"))
    doc = json.loads(runner.invoke(app, ["agents", "list", "--json", "-c", str(path)]).stdout)
    assert doc["policy_store"]["present"] is True
    rows = {a["name"]: a for a in doc["agents"]}
    assert rows["rate-limits"]["off"] is None and rows["rate-limits"]["stages"] == ["connect", "mail", "rcpt"]
    assert all(a["off"] is None and a["off_without_store"] is None for a in doc["agents"])


async def _create_store(path: Path) -> None:
    async with SqlitePolicyStore(path):
        pass


def test_track_why_reads_a_damaged_line_without_failing() -> None:
    from edgeward.cli.track import explain

    entry = {"event": "REJECT", "msg_id": "01Q", "decided_by": "threshold reject 7",
             "findings": [{"name": "SPF_FAIL", "agent": None, "score": "3x"},
                          {"name": 7, "agent": "content-filter", "score": 5},
                          {"name": "FLAG", "score": True}, "not a finding"]}  # fmt: skip
    lines = explain([entry])
    assert any("SPF_FAIL" in line and "3x" in line for line in lines)
    assert lines[-1] == "  total 5; decided by: threshold reject 7"
