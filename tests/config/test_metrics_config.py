"""``[metrics]``: off by default, an address and port or nothing, and a warning when public."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.config.check import audit
from edgeward.config.load import parse_config
from edgeward.config.schema import Config
from edgeward.errors import ConfigError


def _config(tmp_path: Path, listen: str, allow: list[str] | None = None) -> Config:
    data: dict[str, object] = {"accepted_domains": ["example.test"], "metrics": {"listen": listen}}
    if allow is not None:
        data["web"] = {"metrics_allow": allow}
    return parse_config(data, base=tmp_path)


def test_off_by_default(tmp_path: Path) -> None:
    assert parse_config({}, base=tmp_path).metrics.listen == ""


@pytest.mark.parametrize("listen", ["localhost:9464", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", "9464"])
def test_what_is_no_address_and_port_is_refused_naming_the_key(tmp_path: Path, listen: str) -> None:
    with pytest.raises(ConfigError, match="metrics"):
        _config(tmp_path, listen)


def test_plain_http_metrics_open_to_public_networks_are_warned_about(tmp_path: Path) -> None:
    def keys(listen: str, allow: list[str] | None = None) -> list[str]:
        return [p.key for p in audit(_config(tmp_path, listen, allow))]

    assert "metrics.listen" not in keys("127.0.0.1:9464", ["0.0.0.0/0"])  # loopback only anyway
    assert "metrics.listen" not in keys("0.0.0.0:9464")  # the default readers: loopback
    assert "metrics.listen" not in keys("0.0.0.0:9464", ["10.0.0.0/8"])
    assert "metrics.listen" in keys("0.0.0.0:9464", ["0.0.0.0/0"])
