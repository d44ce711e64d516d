"""``edgeward antispam reputation`` and ``greylist`` over the policy store the agents wrote."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.config.schema import GreylistConfig, ReceiveConnectorConfig, ReputationConfig
from edgeward.filters.agents.greylist import Greylisting
from edgeward.filters.agents.reputation import SenderReputation
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.verdict import Verdict
from edgeward.ports import SystemClock
from edgeward.state.policy import SqlitePolicyStore, default_policy_path
from edgeward.testing.dns import FakeResolver
from edgeward.types import Action, Address, Finding, Peer

runner = CliRunner()
CONNECTOR = ReceiveConnectorConfig(name="internet")


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text(f"accepted_domains = ['example.test']\n[server]\ndata_dir = '{tmp_path}'\n")
    return path


async def _learn(tmp_path: Path) -> None:
    path = default_policy_path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    async with SqlitePolicyStore(path) as store:
        rep = SenderReputation(store, FakeResolver(), ReputationConfig())
        bad = StageContext(Stage.EOD, SessionInfo("S1", Peer("192.0.2.66", 1), CONNECTOR))
        spam = Verdict(Action.CONTINUE, None, (Finding("SCL_9", "c"), Finding("RDNS_NONE", "r")), (), 10, "t")
        for _ in range(20):
            await rep.learned(bad, spam)
        grey = Greylisting(store, SystemClock(), GreylistConfig(enabled=True))
        info = SessionInfo("S2", Peer("198.51.100.7", 1), CONNECTOR)
        rcpt = StageContext(
            Stage.RCPT, info, mail_from=Address("a", "remote.test"), recipient=Address("u", "example.test")
        )
        assert (await grey.check(Stage.RCPT, rcpt)).action is Action.TEMPFAIL


def test_reputation_show_list_and_unblock(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    missing = runner.invoke(app, ["antispam", "reputation", "list", "-c", config])
    assert missing.exit_code == 1 and "no policy store" in missing.output
    asyncio.run(_learn(tmp_path))
    shown = runner.invoke(app, ["antispam", "reputation", "show", "192.0.2.66", "-c", config])
    assert shown.exit_code == 0, shown.output
    assert "messages  20" in shown.output and "SRL       7" in shown.output
    assert "blocked   SRL 7 over 20 messages" in shown.output
    unknown = runner.invoke(app, ["antispam", "reputation", "show", "192.0.2.1", "-c", config])
    assert "SRL       none (rated from 20 messages)" in unknown.output and "blocked   no" in unknown.output
    listed = runner.invoke(app, ["antispam", "reputation", "list", "-c", config])
    assert listed.output.split()[:4] == ["192.0.2.66", "SRL", "7", "blocked,"] and "left" in listed.output
    assert (
        runner.invoke(app, ["antispam", "reputation", "unblock", "192.0.2.66", "-c", config]).exit_code == 0
    )
    assert (
        "blocked   no"
        in runner.invoke(app, ["antispam", "reputation", "show", "192.0.2.66", "-c", config]).output
    )
    bad = runner.invoke(app, ["antispam", "reputation", "show", "not-an-ip", "-c", config])
    assert bad.exit_code == 2 and "is not an IPv4 or IPv6 address" in bad.output


def test_greylist_list_and_clear(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    asyncio.run(_learn(tmp_path))
    listed = runner.invoke(app, ["antispam", "greylist", "list", "-c", config])
    assert listed.exit_code == 0, listed.output
    assert "deferred 198.51.100.0/24|a@remote.test|u@example.test" in listed.output
    other = runner.invoke(app, ["antispam", "greylist", "clear", "--network", "203.0.113.0/24", "-c", config])
    assert "0 greylisting entries removed" in other.output
    cleared = runner.invoke(app, ["antispam", "greylist", "clear", "--network", "198.51.100.9", "-c", config])
    assert "1 greylisting entries removed" in cleared.output
    assert (
        "no greylisting entries" in runner.invoke(app, ["antispam", "greylist", "list", "-c", config]).output
    )
