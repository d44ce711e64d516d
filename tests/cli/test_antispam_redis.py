"""The ``edgeward antispam`` commands on a Redis policy store: they change what every gateway on
that server reads, and a Redis that is down is a clear error, not a traceback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.state.policy import default_policy_path
from edgeward.state.redis_policy import RedisPolicyStore
from tests.redisserver import REDIS_SERVER, RedisServer

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
runner = CliRunner()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    s = RedisServer(tmp_path).start()
    yield s
    s.stop()


def _config(tmp_path: Path, url: str) -> str:
    path = tmp_path / "edgeward.toml"
    path.write_text(
        f"accepted_domains = ['example.test']\n[server]\ndata_dir = '{tmp_path}'\n"
        f"[policy_store]\nbackend = 'redis'\nurl = '{url}'\nprefix = 'mx:'\n"
    )
    return str(path)


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["antispam", *args])
    return result.exit_code, result.output


def test_list_changes_go_to_redis_and_not_to_a_local_file(tmp_path: Path, server: RedisServer) -> None:
    cfg = _config(tmp_path, server.url)
    code, out = invoke("ip", "block", "add", "198.51.100.7", "--comment", "seen at gw2", "-c", cfg)
    assert code == 0, out
    assert invoke("sender", "block", "add", "*.spam.test", "-c", cfg)[0] == 0

    async def gateway_view() -> tuple[str | None, bool]:
        async with RedisPolicyStore(server.url, prefix="mx:") as store:
            entry = await store.list_get("ip-block", "198.51.100.7/32")
            return (None if entry is None else entry.comment), await store.list_get(
                "sender-block", "*.spam.test"
            ) is not None

    assert asyncio.run(gateway_view()) == ("seen at gw2", True)
    assert not default_policy_path(tmp_path).exists()
    [entry] = json.loads(invoke("ip", "block", "list", "--json", "-c", cfg)[1])
    assert entry["network"] == "198.51.100.7/32"
    code, out = invoke("reputation", "list", "-c", cfg)
    assert code == 0, out


def test_a_redis_that_is_down_is_a_clear_error(tmp_path: Path, server: RedisServer) -> None:
    cfg = _config(tmp_path, server.url)
    server.stop()
    code, out = invoke("ip", "block", "add", "198.51.100.7", "-c", cfg)
    assert code == 1
    assert "policy store redis://127.0.0.1" in out and "Traceback" not in out
