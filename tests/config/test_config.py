from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.cli.init import render
from edgeward.config.check import audit
from edgeward.config.load import load_config, parse_config
from edgeward.config.schema import Config, parse_duration, parse_size
from edgeward.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"), [(60, 60.0), ("90s", 90.0), ("10m", 600.0), ("4h", 14400.0), ("2d", 172800.0)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", [float("inf"), float("nan"), "9" * 400 + "s", 10**400, True, "soon"])
def test_durations_refuse_what_is_not_a_finite_time(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


def test_an_infinite_timeout_in_toml_is_a_config_error(tmp_path: Path) -> None:
    # TOML spells infinity "inf"; it used to load and make the first asyncio.timeout raise.
    path = tmp_path / "edgeward.toml"
    path.write_text("[dns]\ntimeout = inf\n")
    with pytest.raises(ConfigError, match="duration"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "size"), [(1024, 1024), ("64KB", 65536), ("10MB", 10485760), ("1g", 1 << 30)]
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


def test_defaults_are_exchange_edge_values() -> None:
    rc = Config().receive_connectors[0]
    assert (rc.max_message_size, rc.max_recipients, rc.max_header_size, rc.max_hop_count) == (
        10485760,
        200,
        65536,
        30,
    )
    assert (rc.max_connections, rc.max_connections_per_source) == (5000, 100)
    assert rc.permissions == ("submit",)
    q = Config().queue
    assert (q.glitch_retry_count, q.glitch_retry_interval, q.delay_notification, q.expiration) == (
        4,
        60,
        14400,
        172800,
    )


def test_errors_name_the_key_and_what_was_found(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[queue]\nexpiration = "forever"\n[[send_connectors]]\nname = "x"\naddress_spaces = ["*"]\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    locs = {p[0] for p in err.value.problems}
    assert "queue.expiration" in locs
    assert any("send_connectors.0" in loc for loc in locs)  # no route given
    assert str(path) in str(err.value)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_data_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    config = parse_config({"server": {"data_dir": "data"}}, base=tmp_path)
    assert config.server.data_dir == tmp_path / "data"


def test_init_refuses_open_relay_ranges() -> None:
    with pytest.raises(ValueError, match="open relay"):
        render(hostname="mx.example.org", listen=["0.0.0.0:25"], accept_domains=["example.org"],
               relay_from=["0.0.0.0/0"], smart_host=None)  # fmt: skip


def test_audit_flags_insecure_combinations() -> None:
    config = parse_config({
        "accepted_domains": ["example.org"],
        "receive_connectors": [{"name": "open", "permissions": ["submit", "relay"], "tls": False}],
        "queue": {"fsync": False},
    })  # fmt: skip
    problems = audit(config)
    found = {p.severity: "\n".join(str(q) for q in problems if q.severity == p.severity) for p in problems}
    assert "open relay" in found["error"]
    assert "TLS is disabled" in found["warning"] and "fsync" in found["warning"]


def test_audit_of_init_output_is_clean(tmp_path: Path) -> None:
    import tomllib

    text = render(hostname="mx.example.org", listen=["0.0.0.0:25"], accept_domains=["example.org"],
                  relay_from=["10.0.0.0/24"], smart_host="10.0.0.5:25")  # fmt: skip
    assert audit(parse_config(tomllib.loads(text), base=tmp_path)) == []


def test_audit_flags_auth_without_tls() -> None:
    config = parse_config({
        "accepted_domains": ["example.org"],
        "receive_connectors": [{"name": "submission", "remote_ranges": ["10.0.0.0/8"],
                                "permission_groups": ["anonymous", "users"], "auth_mechanisms": ["PLAIN"],
                                "auth_without_tls": True}],
    })  # fmt: skip
    assert any("clear text" in str(w) for w in audit(config))


def test_connector_consistency_is_validated() -> None:
    with pytest.raises(ConfigError, match="auth_mechanisms needs 'users'"):
        parse_config({"receive_connectors": [{"name": "x", "auth_mechanisms": ["PLAIN"]}]})
    with pytest.raises(ConfigError, match="need client_ca"):
        parse_config({"receive_connectors": [{"name": "x", "domain_secure_partners": ["partner.test"],
                                              "permission_groups": ["anonymous", "partners"]}]})  # fmt: skip


def test_the_commented_submission_connectors_of_init_are_valid_when_enabled(tmp_path: Path) -> None:
    import tomllib

    text = render(hostname="mx.example.org", listen=["0.0.0.0:25"], accept_domains=["example.org"],
                  relay_from=["10.0.0.0/24"], smart_host=None)  # fmt: skip
    enabled = "\n".join(
        line[2:] if line.startswith("# ") and ("=" in line or line.startswith("# [[")) else line
        for line in text.splitlines()
    )
    config = parse_config(tomllib.loads(enabled), base=tmp_path)
    names = [c.name for c in config.receive_connectors]
    assert names == ["internet", "relay", "submission", "submissions"]
    assert audit(config) == []


def test_audit_flags_a_readable_smart_host_password(tmp_path: Path) -> None:
    secret = tmp_path / "smarthost.pass"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    config = parse_config({
        "accepted_domains": ["example.org"],
        "send_connectors": [{"name": "hub", "address_spaces": ["*"], "smart_hosts": ["hub.example.org"],
                             "tls": "verify_hostname", "auth_username": "relay",
                             "auth_password_file": str(secret)}],
    })  # fmt: skip
    assert any("readable by others" in str(w) for w in audit(config))
    secret.chmod(0o600)
    assert audit(config) == []


def test_smart_host_auth_needs_mandatory_tls() -> None:
    with pytest.raises(ConfigError, match="smart-host AUTH needs tls"):
        parse_config({"send_connectors": [{"name": "hub", "address_spaces": ["*"], "smart_hosts": ["h"],
                                           "auth_username": "u", "auth_password_file": "/p"}]})  # fmt: skip


def _outbound(dns: dict[str, object], **send: object) -> list[str]:
    config = parse_config({
        "accepted_domains": ["example.org"],
        "receive_connectors": [{"name": "in", "remote_ranges": ["10.0.0.0/8"]}],
        "send_connectors": [{"name": "internet", "address_spaces": ["*"], "dns_routing": True, **send}],
        "dns": dns,
    })  # fmt: skip
    return [str(p) for p in audit(config)]


def test_audit_flags_dane_without_a_local_validating_resolver() -> None:
    assert any("/etc/resolv.conf" in w for w in _outbound({}, dane=True))
    assert any("over the network" in w for w in _outbound({"servers": ["192.0.2.53"]}, dane=True))
    assert _outbound({"servers": ["127.0.0.1"]}, dane=True) == []


def test_audit_flags_clear_text_beside_outbound_policies() -> None:
    assert any("tls = 'none'" in w for w in _outbound({}, mta_sts=True, tls="none"))
    assert _outbound({}, mta_sts=True) == []


def test_mta_sts_and_dane_need_dns_routing() -> None:
    with pytest.raises(ConfigError, match="dns_routing"):
        parse_config({"send_connectors": [{"name": "hub", "address_spaces": ["*"],
                                           "smart_hosts": ["10.0.0.5"], "mta_sts": True}]})  # fmt: skip


def test_source_address_must_be_an_ip_address() -> None:
    connector = {
        "name": "hub",
        "address_spaces": ["*"],
        "smart_hosts": ["10.0.0.5"],
        "source_address": "mx.example",
    }
    with pytest.raises(ConfigError, match=r"IPv4 or IPv6"):
        parse_config({"send_connectors": [connector]})
