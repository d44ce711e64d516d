"""The Redis policy store beyond the conformance suite, against real redis-server instances.

What only a shared server has: two gateways' stores seeing each other's counters and lists,
prefixes that keep two deployments apart (glob characters included), the server reclaiming
expired keys itself, AUTH, TLS, a unix socket, and each fault a server can give (down, hung,
OOM, READONLY, data that is not ours), each of which must be a PolicyStoreError and none of
which may outlive the fault.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from edgeward.config.load import parse_config
from edgeward.errors import ConfigError
from edgeward.ports import PolicyStoreError
from edgeward.state.redis_policy import RedisPolicyStore, escape_glob
from edgeward.state.stores import policy_store_for
from edgeward.testing.clock import FakeClock
from tests.redisserver import REDIS_SERVER, RedisServer

SRC = Path(__file__).resolve().parents[2] / "src"

pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not installed (scripts/install-test-deps.sh installs it)"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    s = RedisServer(tmp_path).start()
    yield s
    s.stop()


async def test_two_gateways_share_counters_and_lists(server: RedisServer) -> None:
    async with RedisPolicyStore(server.url) as a, RedisPolicyStore(server.url) as b:
        counts = await asyncio.gather(
            *(a.incr("rate:msg:ip:192.0.2.7", window=60) for _ in range(100)),
            *(b.incr("rate:msg:ip:192.0.2.7", window=60) for _ in range(100)),
        )
        assert sorted(counts) == list(range(1, 201))
        assert await b.get("rate:msg:ip:192.0.2.7") == "200"
        await a.list_add("ip-block", "198.51.100.0/24", comment="seen by a")
        entry = await b.list_get("ip-block", "198.51.100.0/24")
        assert entry is not None and entry.comment == "seen by a"
        assert await b.list_remove("ip-block", "198.51.100.0/24") is True
        assert await a.list_members("ip-block") == []
        # Greylisting's first sight: of two gateways seeing one triplet at once, one stores it.
        added = await asyncio.gather(*(s.add("grey:t:x", "first", ttl=300) for s in (a, b) * 10))
        assert added.count(True) == 1


_COUNTER = """
import asyncio, sys
from edgeward.state.redis_policy import RedisPolicyStore

async def main() -> None:
    async with RedisPolicyStore(sys.argv[1]) as store:
        seen = [await store.incr("rate:shared", window=3600) for _ in range(int(sys.argv[2]))]
    print(" ".join(map(str, seen)))

asyncio.run(main())
"""


async def test_two_processes_count_without_losing_an_increment(server: RedisServer) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _COUNTER, server.url, "200", env=env, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    async with RedisPolicyStore(server.url) as store:
        mine = [await store.incr("rate:shared", window=3600) for _ in range(100)]
        outputs = [await p.communicate() for p in procs]
        assert [p.returncode for p in procs] == [0, 0]
        theirs = [int(n) for out, _ in outputs for n in out.split()]
        assert sorted(mine + theirs) == list(range(1, 501))


async def test_prefixes_keep_deployments_apart_even_with_glob_characters(server: RedisServer) -> None:
    clock = FakeClock()
    # Unescaped, "gw[12]:k:*" would match gw1's keys and "a*" every key starting with "a".
    async with (
        RedisPolicyStore(server.url, prefix="gw[12]:", clock=clock) as odd,
        RedisPolicyStore(server.url, prefix="gw1:", clock=clock) as plain,
    ):
        await odd.set("a*", "odd")
        await plain.set("a*", "plain")
        await plain.set("ab", "plain", ttl=5)
        await plain.list_add("l", "m", ttl=5)
        assert await odd.get("a*") == "odd"
        assert [(v.key, v.value) for v in await odd.scan("")] == [("a*", "odd")]
        assert [v.key for v in await plain.scan("a*")] == ["a*"]
        assert [v.key for v in await plain.scan("a")] == ["a*", "ab"]
        clock.advance(5)
        assert await odd.purge_expired() == 0
        assert await plain.purge_expired() == 2
    assert escape_glob(r"x*?[]\y") == r"x\*\?\[\]\\y"


async def test_the_server_reclaims_what_expires(server: RedisServer) -> None:
    clock = FakeClock()
    raw = server.client()
    async with RedisPolicyStore(server.url, prefix="p:", clock=clock) as store:
        await store.set("grey:t", "1", ttl=300)
        await store.set("rep:x", "kept")
        assert 0 < raw.pttl("p:k:grey:t") <= 300_000
        assert raw.pttl("p:k:rep:x") == -1
        assert await store.incr("rate:c", window=60) == 1
        first = raw.pttl("p:k:rate:c")
        clock.advance(30)
        assert await store.incr("rate:c", window=60) == 2
        # A fixed window: later increments neither move the stored expiry nor the server's.
        assert raw.hget("p:k:rate:c", "x") == repr(clock.now() - 30 + 60).encode()
        assert 0 < raw.pttl("p:k:rate:c") <= first
        await store.list_add("l", "a", ttl=10)
        await store.list_add("l", "b", ttl=20)
        assert 10_000 < raw.pttl("p:l:l") <= 20_000 and 10_000 < raw.pttl("p:m:l") <= 20_000
        await store.list_add("l", "c")  # a member that never expires keeps the list
        assert raw.pttl("p:l:l") == -1 and raw.pttl("p:m:l") == -1
    raw.close()


async def test_a_password_from_a_private_file(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="s3cret-pw").start()
    try:
        secret = tmp_path / "redis.pw"
        secret.write_text("s3cret-pw\n")
        secret.chmod(0o600)
        config = parse_config(
            {
                "server": {"data_dir": str(tmp_path)},
                "policy_store": {"backend": "redis", "url": server.url, "password_file": "redis.pw"},
            },
            base=tmp_path,
        )
        store = policy_store_for(config)
        assert isinstance(store, RedisPolicyStore)
        assert "s3cret-pw" not in repr(store)
        async with store:
            await store.set("k", "v")
            assert await store.get("k") == "v"
        wrong = RedisPolicyStore(server.url, password="wrong")
        with pytest.raises(PolicyStoreError, match=r"WRONGPASS|invalid"):
            await wrong.open()
        await wrong.close()
    finally:
        server.stop()


async def test_no_password_for_a_server_that_wants_one_is_a_policy_store_error(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="s3cret-pw").start()
    try:
        store = RedisPolicyStore(server.url)
        with pytest.raises(PolicyStoreError, match=r"(?i)NOAUTH|authenticat"):
            await store.get("k")
        await store.close()
    finally:
        server.stop()


def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "redis.pw"
    secret.write_text("pw\n")
    secret.chmod(0o644)
    config = parse_config(
        {
            "server": {"data_dir": str(tmp_path)},
            "policy_store": {"backend": "redis", "password_file": str(secret)},
        },
        base=tmp_path,
    )
    with pytest.raises(ConfigError, match="readable by other users"):
        policy_store_for(config)
    secret.chmod(0o600)
    secret.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        policy_store_for(config)
    secret.unlink()
    with pytest.raises(ConfigError, match="cannot read"):
        policy_store_for(config)


async def test_redis_going_away_and_coming_back_needs_no_reopening(server: RedisServer) -> None:
    async with RedisPolicyStore(server.url, timeout=1) as store:
        assert await store.incr("rate:a", window=60) == 1
        server.stop()
        with pytest.raises(PolicyStoreError, match="policy store redis://"):
            await store.incr("rate:a", window=60)
        with pytest.raises(PolicyStoreError):
            await store.list_members("ip-block")
        server.start()  # the same port, empty: nothing persisted, scripts no longer loaded
        assert await store.incr("rate:a", window=60) == 1
        await store.list_add("ip-block", "192.0.2.1")
        assert [m.member for m in await store.list_members("ip-block")] == ["192.0.2.1"]


async def test_a_hung_server_is_a_time_out_not_a_hang(server: RedisServer) -> None:
    async with RedisPolicyStore(server.url, timeout=0.5) as store:
        await store.set("k", "v")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(PolicyStoreError, match="policy store"):
                await store.get("k")
        finally:
            server.proc.send_signal(signal.SIGCONT)
        assert await store.get("k") == "v"


async def test_oom_and_readonly_replies_are_policy_store_errors(server: RedisServer) -> None:
    raw = server.client()
    async with RedisPolicyStore(server.url) as store:
        await store.set("k", "v")
        raw.config_set("maxmemory-policy", "noeviction")
        raw.config_set("maxmemory", "1")
        with pytest.raises(PolicyStoreError, match="maxmemory"):
            await store.incr("rate:x", window=60)
        assert await store.get("k") == "v"  # reads still answer
        raw.config_set("maxmemory", "0")
        assert await store.incr("rate:x", window=60) == 1
        # A replica refuses writes; a failover that left us on one must not look like success.
        dead = RedisServer(server.dir).port
        raw.execute_command("REPLICAOF", "127.0.0.1", str(dead))
        with pytest.raises(PolicyStoreError, match=r"(?i)read.only"):
            await store.list_add("ip-block", "192.0.2.9")
        raw.execute_command("REPLICAOF", "NO", "ONE")
        await store.list_add("ip-block", "192.0.2.9")
    raw.close()


async def test_data_that_is_not_ours_is_a_policy_store_error(server: RedisServer) -> None:
    raw = server.client()
    raw.set("edgeward:k:plain-string", "x")
    raw.hset("edgeward:k:bad-expiry", mapping={"v": "1", "x": "tomorrow"})
    raw.hset("edgeward:m:bad-list", "m", "{not json")
    raw.hset("edgeward:k:latin1", mapping={"v": b"\xff\xfe"})
    async with RedisPolicyStore(server.url) as store:
        for call in (
            store.get("plain-string"),
            store.get("bad-expiry"),
            store.incr("plain-string", window=5),
            store.list_get("bad-list", "m"),
            store.list_members("bad-list"),
            store.get("latin1"),
            store.scan(""),
        ):
            with pytest.raises(PolicyStoreError):
                await call
        # Housekeeping steps over what is not ours.
        assert await store.purge_expired() == 0
        # A caller's mistake is still a ValueError, and nothing was written for it.
        with pytest.raises(ValueError, match="not an integer"):
            await store.incr("latin1", window=5)
        with pytest.raises(ValueError):
            await store.incr("k", window=5, amount=2**64)
    raw.close()


async def test_a_unix_socket(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, unix_socket=True).start()
    try:
        async with RedisPolicyStore(server.url) as store:
            assert await store.incr("rate:u", window=5) == 1
            assert await store.scan("rate:") != []
    finally:
        server.stop()


async def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    paths = (tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem")
    cert.cert_chain_pems[0].write_to_path(paths[0])
    cert.private_key_pem.write_to_path(paths[1])
    ca.cert_pem.write_to_path(paths[2])
    server = RedisServer(tmp_path, tls=paths).start()
    try:
        assert server.url.startswith("rediss://")
        config = parse_config(
            {
                "server": {"data_dir": str(tmp_path)},
                "policy_store": {"backend": "redis", "url": server.url, "ca_file": "ca.pem"},
            },
            base=tmp_path,
        )
        store = policy_store_for(config)
        async with store:
            await store.list_add("ip-allow", "192.0.2.0/24", comment="office")
            assert [m.comment for m in await store.list_members("ip-allow")] == ["office"]
        # The system's CAs do not vouch for a private certificate: refused, never sent in clear.
        with pytest.raises(PolicyStoreError, match=r"(?i)certificate.verify.failed"):
            async with RedisPolicyStore(server.url):
                pass
    finally:
        server.stop()


async def test_calls_made_together_share_a_pipeline_and_survive_a_script_flush(server: RedisServer) -> None:
    raw = server.client()
    async with RedisPolicyStore(server.url) as store:
        await store.set("text", "not a number")
        raw.script_flush()  # as a restarted server: the next EVALSHA meets NOSCRIPT
        results = await asyncio.gather(
            *(store.incr("rate:p", window=60) for _ in range(30)),
            store.incr("text", window=60),
            store.list_get("ip-allow", "192.0.2.1"),
            return_exceptions=True,
        )
        assert sorted(r for r in results[:30] if isinstance(r, int)) == list(range(1, 31))
        assert isinstance(results[30], ValueError) and results[31] is None
        # Each increment ran once: those refused with NOSCRIPT were sent again, no other.
        assert await store.get("rate:p") == "30"
    raw.close()
