"""``[policy_store]``: the backend choice, what the URL may hold, and what ``config check`` says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgeward.config.check import audit
from edgeward.config.load import parse_config
from edgeward.errors import ConfigError
from edgeward.state.policy import SqlitePolicyStore
from edgeward.state.redis_policy import RedisPolicyStore
from edgeward.state.stores import policy_store_for


def _config(tmp_path: Path, **store: Any) -> Any:
    data = {"server": {"data_dir": str(tmp_path)}, "accepted_domains": ["example.test"]}
    return parse_config({**data, "policy_store": store}, base=tmp_path)


def test_sqlite_is_the_default_and_redis_is_chosen_by_backend(tmp_path: Path) -> None:
    assert isinstance(policy_store_for(_config(tmp_path)), SqlitePolicyStore)
    store = policy_store_for(
        _config(tmp_path, backend="redis", url="redis://127.0.0.1:6390/2", prefix="site-a:", timeout="500ms")
    )
    assert isinstance(store, RedisPolicyStore)
    assert (store.url, store.prefix) == ("redis://127.0.0.1:6390/2", "site-a:")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://:hunter2@127.0.0.1:6379/0", "must not hold the password"),
        ("redis://user:hunter2@127.0.0.1/0", "must not hold the password"),
        ("redis://127.0.0.1/0?password=hunter2", "must not hold the password"),
        ("http://127.0.0.1:6379", "url must start with"),
        ("redis:///0", "names no host"),
    ],
)
def test_urls_that_are_refused(tmp_path: Path, url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        _config(tmp_path, backend="redis", url=url)
    assert "hunter2" not in str(caught.value)


def test_a_ca_file_needs_tls_and_the_timeout_is_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rediss"):
        _config(tmp_path, backend="redis", url="redis://10.0.0.5/0", ca_file="ca.pem")
    with pytest.raises(ConfigError, match="timeout"):
        _config(tmp_path, backend="redis", timeout=0)


def _store_warnings(config: Any) -> list[str]:
    return [p.text for p in audit(config) if p.key == "policy_store"]


def test_config_check_warns_about_redis_in_clear_to_another_host(tmp_path: Path) -> None:
    secret = tmp_path / "redis.pw"
    secret.write_text("pw\n")
    secret.chmod(0o600)
    remote = _store_warnings(
        _config(tmp_path, backend="redis", url="redis://10.0.0.5:6379/0", password_file="redis.pw")
    )
    assert len(remote) == 1 and "without TLS" in remote[0] and "rediss://" in remote[0]
    for quiet in ("redis://127.0.0.1/0", "redis://localhost/0", "redis://[::1]/0", "unix:///run/redis.sock"):
        assert _store_warnings(_config(tmp_path, backend="redis", url=quiet)) == []
    assert _store_warnings(
        _config(tmp_path, backend="redis", url="rediss://redis.example.test/0", password_file="redis.pw")
    ) == []
    # No password to a server other hosts reach; and a password file its group can read.
    assert any("no password_file" in w for w in _store_warnings(
        _config(tmp_path, backend="redis", url="rediss://redis.example.test/0")
    ))  # fmt: skip
    secret.chmod(0o640)
    assert any("readable by its group" in w for w in _store_warnings(
        _config(tmp_path, backend="redis", url="rediss://redis.example.test/0", password_file="redis.pw")
    ))  # fmt: skip
    secret.chmod(0o644)
    assert any("serve refuses it" in w for w in _store_warnings(
        _config(tmp_path, backend="redis", url="redis://127.0.0.1/0", password_file="redis.pw")
    ))  # fmt: skip
    # The settings do nothing while the backend is SQLite.
    assert _store_warnings(_config(tmp_path, url="redis://10.0.0.5/0")) == []
