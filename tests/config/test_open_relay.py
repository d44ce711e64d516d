"""Open-relay shapes: refused by validation, errors in the audit, refused by ``serve`` and SIGHUP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgeward.cli.init import render
from edgeward.cli.main import app
from edgeward.config.check import audit, errors
from edgeward.config.load import parse_config
from edgeward.config.schema import AGENT_NAMES, Config
from edgeward.errors import ConfigError
from edgeward.queue.spool import Spool
from edgeward.runtime import Gateway
from edgeward.runtime_policy import build_agents
from edgeward.testing.dns import FakeResolver
from edgeward.testing.policystore import MemoryPolicyStore

runner = CliRunner()


def _config(*connectors: dict[str, Any], **extra: Any) -> Config:
    data = {"accepted_domains": ["example.org"], "receive_connectors": list(connectors), **extra}
    return parse_config(data)


def _relay(*ranges: str) -> dict[str, Any]:
    return {"name": "relay", "permissions": ["submit", "relay"], "remote_ranges": list(ranges)}


def test_unknown_agent_names_are_a_config_error_listing_the_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"agents": {"disabled": ["hop-count", "spam-filter"]}})
    [(loc, msg, found)] = err.value.problems
    assert loc == "agents.disabled"
    assert "'spam-filter'" in msg and all(name in msg for name in AGENT_NAMES)
    assert "spam-filter" in found


def test_relay_control_cannot_be_disabled() -> None:
    with pytest.raises(ConfigError, match=r"relay-control cannot be disabled.*open relay"):
        parse_config({"agents": {"disabled": ["relay-control"]}})


def test_every_other_agent_may_be_disabled_and_the_names_match_the_pipeline(tmp_path: Path) -> None:
    agents = {"local_recipients": {"enabled": True}, "greylist": {"enabled": True}}
    everything = parse_config(
        {"server": {"data_dir": str(tmp_path)}, "agents": agents, "antivirus": {"enabled": True},
         "rules": [{"name": "any", "actions": {"quarantine": True}}]}  # transport-rules runs with rules
    )  # fmt: skip
    (tmp_path / "recipients.txt").write_text("user@example.org\n")
    spool = Spool(tmp_path / "queue", fsync=False)
    store, dns = MemoryPolicyStore(), FakeResolver()
    built = build_agents(everything, spool, policy_store=store, dns=dns)
    assert tuple(a.name for a in built) == AGENT_NAMES
    optional = [n for n in AGENT_NAMES if n != "relay-control"]
    config = parse_config({"server": {"data_dir": str(tmp_path)}, "agents": {"disabled": optional}})
    assert [a.name for a in build_agents(config, spool, policy_store=store)] == ["relay-control"]


@pytest.mark.parametrize(
    "ranges",
    [
        ("0.0.0.0/0",),
        ("::/0",),
        ("0.0.0.0/1", "128.0.0.0/1"),  # the internet written in two halves
        ("::ffff:0.0.0.0/96",),  # every IPv4 address, written as IPv6
        ("2000::/3",),
        ("10.0.0.0/8", "64.0.0.0/4"),
    ],
)
def test_relay_for_internet_wide_ranges_is_an_error(ranges: tuple[str, ...]) -> None:
    [problem] = errors(audit(_config(_relay(*ranges))))
    assert problem.key == "receive_connectors[0] (relay)"
    assert "open relay" in problem.text


@pytest.mark.parametrize("relay_from", ["0.0.0.0/1", "::ffff:0.0.0.0/96", "2000::/3"])
def test_init_refuses_every_range_config_check_calls_an_open_relay(relay_from: str) -> None:
    with pytest.raises(ValueError, match="open relay"):
        render(hostname="mx.example.org", listen=["0.0.0.0:25"], accept_domains=["example.org"],
               relay_from=["10.0.0.0/24", relay_from], smart_host=None)  # fmt: skip


def test_relay_for_a_narrow_public_range_is_a_warning_and_internal_ranges_are_clean() -> None:
    [problem] = audit(_config(_relay("198.51.100.0/24")))
    assert problem.severity == "warning" and "198.51.100.0/24" in problem.text
    assert audit(_config(_relay("10.0.0.0/8", "192.168.0.0/16", "fd00::/8", "127.0.0.1/32"))) == []


@pytest.mark.parametrize("domain", ["*", "*.com"])
def test_an_accepted_wildcard_over_a_top_level_domain_is_an_error(domain: str) -> None:
    config = parse_config({"accepted_domains": ["example.org", domain]})
    [problem] = errors(audit(config))
    assert problem.key == "accepted_domains[1]" and "open relay" in problem.text
    assert errors(audit(parse_config({"accepted_domains": ["*.example.org"]}))) == []


def test_observe_only_on_an_internet_connector_is_an_open_relay() -> None:
    internet = {"name": "internet"}
    [problem] = errors(audit(_config(internet, agents={"observe_only": True})))
    assert problem.key == "agents.observe_only" and "internet" in problem.text
    internal = {"name": "lab", "remote_ranges": ["10.0.0.0/8"]}
    [warning] = audit(_config(internal, agents={"observe_only": True}))
    assert warning.severity == "warning"


def _write(path: Path, body: str) -> Path:
    path.write_text(f'accepted_domains = ["example.org"]\n[server]\ndata_dir = "."\n{body}')
    return path


def test_config_check_exit_codes(tmp_path: Path) -> None:
    clean = _write(tmp_path / "clean.toml", "")
    result = runner.invoke(app, ["config", "check", "-c", str(clean)])
    assert (result.exit_code, result.stdout.strip()) == (0, f"{clean}: OK")

    warned = _write(tmp_path / "warned.toml", "[queue]\nfsync = false\n")
    result = runner.invoke(app, ["config", "check", "-c", str(warned)])
    assert result.exit_code == 0 and "1 warning(s)" in result.stdout
    assert "warning: queue.fsync" in result.stderr
    assert runner.invoke(app, ["config", "check", "--strict", "-c", str(warned)]).exit_code == 1

    relay = '[[receive_connectors]]\nname = "open"\npermissions = ["relay"]\n'
    unsafe = _write(tmp_path / "unsafe.toml", relay)
    result = runner.invoke(app, ["config", "check", "-c", str(unsafe)])
    assert result.exit_code == 1 and "UNSAFE (1 error(s))" in result.stdout
    assert "error: receive_connectors[0] (open): relay permission for 0.0.0.0/0, ::/0" in result.stderr

    invalid = _write(tmp_path / "invalid.toml", '[agents]\ndisabled = ["relay-control"]\n')
    result = runner.invoke(app, ["config", "check", "-c", str(invalid)])
    assert result.exit_code == 2 and "relay-control cannot be disabled" in result.stderr
    assert "Value error" not in result.stderr


def test_serve_refuses_an_open_relay_before_binding(tmp_path: Path) -> None:
    unsafe = _write(
        tmp_path / "unsafe.toml",
        '[[receive_connectors]]\nname = "open"\nbindings = ["127.0.0.1:1"]\npermissions = ["relay"]\n',
    )
    result = runner.invoke(app, ["serve", "-c", str(unsafe)])
    assert result.exit_code == 2
    assert "open relay" in result.stderr and "refusing to serve" in result.stderr
    assert not (tmp_path / "queue").exists()  # refused before any folder was made


def test_reload_keeps_the_running_configuration_when_the_new_one_is_an_open_relay(tmp_path: Path) -> None:
    path = _write(tmp_path / "edgeward.toml", "")
    config = parse_config({"accepted_domains": ["example.org"], "server": {"data_dir": str(tmp_path)}})
    gateway = Gateway(config, config_path=path, deliver=False)
    running = gateway.config
    _write(path, "[agents]\nobserve_only = true\n")
    gateway.reload()
    assert gateway.config is running


def test_relaxed_sender_login_and_an_unchecked_from_are_warnings() -> None:
    connector = {"name": "submission", "auth_mechanisms": ["PLAIN"], "permission_groups": ["users"],
                 "sender_login_match": False}  # fmt: skip
    config = parse_config({"receive_connectors": [connector], "agents": {"from_header": "off"}})
    found = {(p.severity, p.key, p.text.split(" ", 1)[0]) for p in audit(config)}
    assert ("warning", "receive_connectors[0] (submission)", "sender_login_match") in found
    assert ("warning", "agents.from_header", "'off'") in found
    assert not errors(audit(config))
    assert not [p for p in audit(parse_config({})) if p.key == "agents.from_header"]
