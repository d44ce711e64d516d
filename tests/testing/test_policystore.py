"""Conformance suite of :class:`edgeward.ports.PolicyStore`: the SQLite store, the Redis store
(against a real redis-server the test starts on loopback) and the memory fake pass the same
tests, with expiry driven by one injected FakeClock.

The SQLite-only tests at the end cover what the fake has no counterpart for: two processes
counting on one file, a locked file and a corrupt file, each of which must surface as
PolicyStoreError and never as a wrong answer.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from edgeward.ports import PolicyStore, PolicyStoreError
from edgeward.state.policy import POLICY_MIGRATIONS, SqlitePolicyStore
from edgeward.state.redis_policy import RedisPolicyStore
from edgeward.state.sqlite import StateStore
from edgeward.testing.clock import FakeClock
from edgeward.testing.policystore import MemoryPolicyStore
from tests.redisserver import REDIS_SERVER, RedisServer

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (scripts/install-test-deps.sh installs it)")
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "memory", "redis"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[PolicyStore]:
    if request.param == "memory":
        yield MemoryPolicyStore(clock)
        return
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        async with RedisPolicyStore(server.url, prefix="conformance:", clock=clock) as redis_store:
            yield redis_store
        return
    async with SqlitePolicyStore(tmp_path / "state" / "policy.db", clock=clock) as sqlite_store:
        yield sqlite_store


# -- keys ----------------------------------------------------------------------------------------


async def test_get_set_delete(store: PolicyStore) -> None:
    assert await store.get("rep:192.0.2.1") is None
    await store.set("rep:192.0.2.1", '{"srl": 3}')
    assert await store.get("rep:192.0.2.1") == '{"srl": 3}'
    await store.set("rep:192.0.2.1", '{"srl": 7}')
    assert await store.get("rep:192.0.2.1") == '{"srl": 7}'
    assert await store.delete("rep:192.0.2.1") is True
    assert await store.delete("rep:192.0.2.1") is False
    assert await store.get("rep:192.0.2.1") is None


async def test_values_keep_unicode_and_are_exact(store: PolicyStore) -> None:
    value = "grüße\u2028\x00 tail"
    await store.set("k:ü", value)
    assert await store.get("k:ü") == value


async def test_ttl_expires_by_the_injected_clock(store: PolicyStore, clock: FakeClock) -> None:
    await store.set("grey:t", "first-seen", ttl=300)
    clock.advance(299.5)
    assert await store.get("grey:t") == "first-seen"
    clock.advance(0.5)
    assert await store.get("grey:t") is None
    assert await store.scan("grey:") == []
    assert await store.delete("grey:t") is False


async def test_set_replaces_the_expiry(store: PolicyStore, clock: FakeClock) -> None:
    await store.set("k", "a", ttl=10)
    await store.set("k", "b")
    clock.advance(100)
    assert await store.get("k") == "b"
    await store.set("k", "c", ttl=5)
    clock.advance(5)
    assert await store.get("k") is None


async def test_wall_clock_step_back_revives_nothing_it_should_not(
    store: PolicyStore, clock: FakeClock
) -> None:
    # Expiry is a wall-clock time shared with other processes: stepping the clock back makes an
    # entry live again, as it would for every process reading the same file.
    await store.set("k", "v", ttl=60)
    start = clock.now()
    clock.advance(61)
    assert await store.get("k") is None
    clock.set(start)
    assert await store.get("k") == "v"


async def test_add_only_when_absent_or_expired(store: PolicyStore, clock: FakeClock) -> None:
    assert await store.add("grey:t", "1", ttl=60) is True
    assert await store.add("grey:t", "2", ttl=60) is False
    assert await store.get("grey:t") == "1"
    clock.advance(60)
    assert await store.add("grey:t", "3") is True
    assert await store.get("grey:t") == "3"
    clock.advance(10**6)
    assert await store.get("grey:t") == "3"


async def test_incr_counts_in_a_fixed_window(store: PolicyStore, clock: FakeClock) -> None:
    assert await store.incr("rate:msg:192.0.2.1", window=60) == 1
    clock.advance(30)
    assert await store.incr("rate:msg:192.0.2.1", window=60) == 2
    assert await store.incr("rate:msg:192.0.2.1", window=60, amount=5) == 7
    clock.advance(29.9)
    assert await store.incr("rate:msg:192.0.2.1", window=60) == 8
    clock.advance(0.1)  # 60 s after the first increment: a new window
    assert await store.incr("rate:msg:192.0.2.1", window=60) == 1
    assert await store.get("rate:msg:192.0.2.1") == "1"


async def test_incr_on_a_plain_value(store: PolicyStore) -> None:
    await store.set("n", "41")
    assert await store.incr("n", window=10) == 42
    await store.set("s", "not a number")
    with pytest.raises(ValueError, match="not an integer"):
        await store.incr("s", window=10)
    assert await store.get("s") == "not a number"


async def test_concurrent_increments_are_not_lost(store: PolicyStore) -> None:
    results = await asyncio.gather(*(store.incr("rate:c", window=60) for _ in range(50)))
    assert sorted(results) == list(range(1, 51))


async def test_a_failing_call_among_concurrent_ones_is_undone_alone(store: PolicyStore) -> None:
    await store.set("text", "not a number")
    results = await asyncio.gather(
        store.incr("rate:a", window=60),
        store.incr("text", window=60),
        store.set("other", "kept"),
        store.incr("rate:a", window=60),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[3] == 2 and results[2] is None
    assert isinstance(results[1], ValueError)
    assert await store.get("text") == "not a number"
    assert await store.get("other") == "kept"


async def test_a_caller_cancelled_after_asking_does_not_stop_the_others(store: PolicyStore) -> None:
    waiting = [asyncio.ensure_future(store.incr("rate:x", window=60)) for _ in range(10)]
    await asyncio.sleep(0)  # every call has been made
    waiting[3].cancel()
    done = await asyncio.gather(*waiting, return_exceptions=True)
    counts = sorted(r for r in done if isinstance(r, int))
    assert len(counts) >= 9 and len(set(counts)) == len(counts)
    # A call already made runs to the end, as a command already sent to a server does.
    assert await store.get("rate:x") == "10"


async def test_incr_many_counts_each_key_as_incr_does(store: PolicyStore, clock: FakeClock) -> None:
    assert await store.incr_many({}, window=60) == {}
    assert await store.incr_many({"rep:a:n": 1, "rep:a:scl": 7}, window=60) == {"rep:a:n": 1, "rep:a:scl": 7}
    clock.advance(30)
    assert await store.incr_many({"rep:a:n": 1, "rep:a:scl": 0, "rep:a:new": 2}, window=60) == {
        "rep:a:n": 2,
        "rep:a:scl": 7,
        "rep:a:new": 2,
    }
    clock.advance(30)  # the first two started a window 60 s ago; the third 30 s ago
    assert await store.incr_many({"rep:a:n": 1, "rep:a:new": 1}, window=60) == {"rep:a:n": 1, "rep:a:new": 3}
    assert await store.get("rep:a:scl") is None
    await store.set("text", "not a number")
    with pytest.raises(ValueError, match="not an integer"):
        await store.incr_many({"text": 1}, window=60)
    assert await store.get("text") == "not a number"
    with pytest.raises(ValueError):
        await store.incr_many({"": 1}, window=60)
    with pytest.raises(ValueError):
        await store.incr_many({"k": 1}, window=0)


async def test_list_get_many_answers_each_member_in_order(store: PolicyStore, clock: FakeClock) -> None:
    assert await store.list_get_many("sender-block", []) == []
    odd = 'quote" ] \\ \u2028 ü'
    await store.list_add("sender-block", "@spam.example", comment="c1")
    await store.list_add("sender-block", odd)
    await store.list_add("sender-block", "*.example", ttl=10)
    await store.list_add("other", "bob@example.org")
    wanted = ["bob@example.org", "*.example", odd, "@spam.example", "@spam.example", "absent"]
    found = await store.list_get_many("sender-block", wanted)
    assert [None if e is None else (e.member, e.comment) for e in found] == [
        None,
        ("*.example", ""),
        (odd, ""),
        ("@spam.example", "c1"),
        ("@spam.example", "c1"),
        None,
    ]
    assert found == [await store.list_get("sender-block", m) for m in wanted]
    clock.advance(10)
    assert (await store.list_get_many("sender-block", ["*.example"])) == [None]
    many = [f"m{i}" for i in range(1200)]
    for member in many[::100]:
        await store.list_add("big", member)
    found = await store.list_get_many("big", many)
    assert [e.member for e in found if e is not None] == many[::100]
    for count in (7, 8, 9):  # about the most members one statement of placeholders takes
        wanted = [f"m{100 * i}" if i % 2 else f"absent{i}" for i in range(count)]
        hits = [e is not None for e in await store.list_get_many("big", wanted)]
        assert hits == [bool(i % 2) for i in range(count)]
    with pytest.raises(ValueError):
        await store.list_get_many("sender-block", ["ok", ""])


async def test_scan_by_prefix_in_key_order(store: PolicyStore, clock: FakeClock) -> None:
    await store.set("rep:b", "2")
    await store.set("rep:a", "1", ttl=100)
    await store.set("rep;", "not in the prefix")
    await store.set("re", "short")
    await store.set("rep:c", "gone", ttl=1)
    clock.advance(1)
    found = await store.scan("rep:")
    assert [(v.key, v.value) for v in found] == [("rep:a", "1"), ("rep:b", "2")]
    assert found[0].expires_at == pytest.approx(clock.now() + 99)
    assert found[1].expires_at is None
    assert [v.key for v in await store.scan("rep:", limit=1)] == ["rep:a"]
    assert [v.key for v in await store.scan("")] == ["re", "rep:a", "rep:b", "rep;"]
    assert [v.key for v in await store.scan("\U0010ffff")] == []


async def test_caller_mistakes_are_value_errors(store: PolicyStore) -> None:
    with pytest.raises(ValueError):
        await store.get("")
    with pytest.raises(ValueError):
        await store.set("k", "v", ttl=0)
    with pytest.raises(ValueError):
        await store.set("k", "v", ttl=-5)
    with pytest.raises(ValueError):
        await store.incr("k", window=0)
    with pytest.raises(ValueError):
        await store.set("x" * 5000, "v")
    with pytest.raises(ValueError):
        await store.list_add("ip-block", "")
    with pytest.raises(ValueError):
        await store.set("k", 5)  # type: ignore[arg-type]
    assert await store.scan("") == []


# -- lists ---------------------------------------------------------------------------------------


async def test_lists_with_comment_and_per_member_expiry(store: PolicyStore, clock: FakeClock) -> None:
    t0 = clock.now()
    await store.list_add("ip-block", "198.51.100.0/24", comment="spam run, ticket 12")
    await store.list_add("ip-block", "2001:db8::/32", ttl=3600)
    await store.list_add("ip-allow", "192.0.2.10")
    members = await store.list_members("ip-block")
    assert [(m.member, m.comment, m.added_at, m.expires_at) for m in members] == [
        ("198.51.100.0/24", "spam run, ticket 12", t0, None),
        ("2001:db8::/32", "", t0, t0 + 3600),
    ]
    clock.advance(3600)
    assert [m.member for m in await store.list_members("ip-block")] == ["198.51.100.0/24"]
    assert await store.list_get("ip-block", "2001:db8::/32") is None
    assert await store.list_remove("ip-block", "2001:db8::/32") is False
    assert [m.member for m in await store.list_members("ip-allow")] == ["192.0.2.10"]
    assert await store.list_members("nothing-here") == []


async def test_list_add_replaces_comment_and_expiry(store: PolicyStore, clock: FakeClock) -> None:
    await store.list_add("safe:bob@example.org", "@partner.example", comment="old", ttl=10)
    clock.advance(5)
    await store.list_add("safe:bob@example.org", "@partner.example", comment="new")
    clock.advance(100)
    entry = await store.list_get("safe:bob@example.org", "@partner.example")
    assert entry is not None and entry.comment == "new" and entry.expires_at is None
    assert await store.list_remove("safe:bob@example.org", "@partner.example") is True
    assert await store.list_get("safe:bob@example.org", "@partner.example") is None


async def test_a_list_version_moves_with_every_change_of_that_list_only(
    store: PolicyStore, clock: FakeClock
) -> None:
    never = await store.list_version("ip-block")
    assert await store.list_version("ip-block") == never
    seen = [never]
    await store.list_add("ip-block", "198.51.100.0/24")
    seen.append(await store.list_version("ip-block"))
    await store.list_add("ip-block", "198.51.100.0/24", comment="replaced")
    seen.append(await store.list_version("ip-block"))
    before_other = seen[-1]
    await store.list_add("ip-allow", "192.0.2.10")
    await store.set("rep:192.0.2.1:connections", "3")
    await store.incr("rate:x", window=60)
    assert await store.list_version("ip-block") == before_other  # other lists, keys: no change
    assert await store.list_version("ip-allow") != await store.list_version("ip-block")
    assert await store.list_remove("ip-block", "198.51.100.0/24") is True
    seen.append(await store.list_version("ip-block"))
    assert len(set(seen)) == len(seen)  # every change a new token, none back to an old one
    clock.advance(10)
    assert await store.list_version("ip-block") == seen[-1]  # time alone moves nothing


async def test_purge_drops_only_what_expired(store: PolicyStore, clock: FakeClock) -> None:
    await store.set("a", "1", ttl=10)
    await store.set("b", "2")
    await store.list_add("l", "x", ttl=10)
    await store.list_add("l", "y")
    assert await store.purge_expired() == 0
    clock.advance(10)
    assert await store.purge_expired() == 2
    assert await store.purge_expired() == 0
    assert [v.key for v in await store.scan("")] == ["b"]
    assert [m.member for m in await store.list_members("l")] == ["y"]


# -- faults --------------------------------------------------------------------------------------


async def _break(store: PolicyStore, request: pytest.FixtureRequest) -> PolicyStore:
    """The same store after a fault: the fake told so, the SQLite file overwritten and reopened
    (as the next process to open it after a disk fault would), the Redis server gone."""
    if isinstance(store, MemoryPolicyStore):
        store.break_down()
        return store
    if isinstance(store, RedisPolicyStore):
        request.getfixturevalue("redis_server").stop()
        return store
    assert isinstance(store, SqlitePolicyStore)
    await store.close()
    _corrupt(store.path)
    broken = SqlitePolicyStore(store.path)
    with pytest.raises(PolicyStoreError, match="not a database"):
        await broken.open()
    return broken


def _corrupt(path: Path) -> None:
    # Overwrite every page, header included, as a disk fault or a stray write would.
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.write(b"\xde\xad\xbe\xef" * (max(size, 8192) // 4))
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


OPERATIONS: list[tuple[str, Callable[[PolicyStore], object]]] = [
    ("get", lambda s: s.get("k")),
    ("set", lambda s: s.set("k", "v")),
    ("add", lambda s: s.add("k", "v")),
    ("delete", lambda s: s.delete("k")),
    ("incr", lambda s: s.incr("k", window=1)),
    ("scan", lambda s: s.scan("")),
    ("list_add", lambda s: s.list_add("l", "m")),
    ("list_remove", lambda s: s.list_remove("l", "m")),
    ("list_get", lambda s: s.list_get("l", "m")),
    ("list_get_many", lambda s: s.list_get_many("l", ["m", "n"])),
    ("incr_many", lambda s: s.incr_many({"k1": 1, "k2": 2}, window=1)),
    ("list_members", lambda s: s.list_members("l")),
    ("purge_expired", lambda s: s.purge_expired()),
]


async def test_a_broken_store_raises_policy_store_error_from_every_method(
    store: PolicyStore, request: pytest.FixtureRequest
) -> None:
    await store.set("k", "v")
    broken = await _break(store, request)
    failed = []
    for name, op in OPERATIONS:
        try:
            await op(broken)  # type: ignore[misc]
        except PolicyStoreError:
            failed.append(name)
    assert failed == [name for name, _ in OPERATIONS]


async def test_a_repaired_file_is_used_again_without_reopening(tmp_path: Path) -> None:
    path = tmp_path / "policy.db"
    path.write_bytes(b"garbage" * 1000)
    store = SqlitePolicyStore(path)
    with pytest.raises(PolicyStoreError):
        await store.open()
    with pytest.raises(PolicyStoreError):
        await store.get("k")
    path.unlink()  # the administrator removes the damaged file
    await store.set("k", "v")
    assert await store.get("k") == "v"
    await store.close()
    with pytest.raises(PolicyStoreError, match="closed"):
        await store.get("k")


# -- SQLite only ---------------------------------------------------------------------------------

_COUNTER = """
import asyncio, sys
from pathlib import Path
from edgeward.state.policy import POLICY_MIGRATIONS, SqlitePolicyStore
from edgeward.state.sqlite import StateStore

async def main() -> None:
    async with SqlitePolicyStore(Path(sys.argv[1]), busy_timeout=30) as store:
        seen = [await store.incr("rate:shared", window=3600) for _ in range(int(sys.argv[2]))]
        await store.list_add("ip-block", f"pid-{sys.argv[3]}", comment="from a second process")
    print(" ".join(map(str, seen)))

asyncio.run(main())
"""


async def test_two_processes_count_on_one_file_without_losing_an_increment(tmp_path: Path) -> None:
    path = tmp_path / "state" / "policy.db"
    async with SqlitePolicyStore(path) as store:
        await store.set("before", "1")
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", _COUNTER, str(path), "200", str(n), env=env, stdout=subprocess.PIPE
            )
            for n in range(2)
        ]
        # The gateway's own process counts on the same key meanwhile.
        mine = [await store.incr("rate:shared", window=3600) for _ in range(100)]
        outputs = [await p.communicate() for p in procs]
        assert [p.returncode for p in procs] == [0, 0]
        theirs = [int(n) for out, _ in outputs for n in out.split()]
        assert sorted(mine + theirs) == list(range(1, 501))
        assert await store.get("rate:shared") == "500"
        assert [m.member for m in await store.list_members("ip-block")] == ["pid-0", "pid-1"]


async def test_a_file_locked_past_the_busy_timeout_is_a_policy_store_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.db"
    async with SqlitePolicyStore(path, busy_timeout=0.05) as store:
        await store.set("k", "v")
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            with pytest.raises(PolicyStoreError, match="locked"):
                await store.set("k", "w")
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert await store.get("k") == "v"
        await store.set("k", "w")
        assert await store.get("k") == "w"


async def test_point_lookups_are_answered_on_the_event_loop_and_the_rest_in_the_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    hops: list[object] = []
    real = loop.run_in_executor

    def counted(executor: object, fn: Callable[..., object], *args: object) -> asyncio.Future[object]:
        hops.append(fn)
        return real(executor, fn, *args)  # type: ignore[arg-type]

    async with SqlitePolicyStore(tmp_path / "policy.db") as store:
        await store.set("k", "v")
        await store.list_add("sender-block", "@spam.example")
        monkeypatch.setattr(loop, "run_in_executor", counted)
        assert await store.get("k") == "v"
        assert await store.get("absent") is None
        assert (await store.list_get("sender-block", "@spam.example")) is not None
        found = await store.list_get_many("sender-block", ["a@b.c", "@spam.example"])
        assert [e is not None for e in found] == [False, True]
        token = await store.list_version("sender-block")
        assert hops == []
        await store.set("k", "w")  # a write goes to the worker thread, and a lookup then sees it
        assert len(hops) == 1 and await store.get("k") == "w"
        assert [m.member for m in await store.list_members("sender-block")] == ["@spam.example"]
        assert len(hops) == 2
        assert await store.list_version("sender-block") == token


async def test_a_list_version_moves_for_a_write_by_another_connection_and_after_migration(
    tmp_path: Path,
) -> None:
    path = tmp_path / "policy.db"
    # A file of the first schema with a list in it, as a release before version tokens left it.
    old = StateStore(path, migrations=POLICY_MIGRATIONS[:1])
    old.connect()
    with old.transaction() as conn:
        conn.execute(
            "INSERT INTO list_members (list, member, comment, added, expires) VALUES (?, ?, '', 0, NULL)",
            ("ip-block", "192.0.2.0/24"),
        )
    old.close()
    async with SqlitePolicyStore(path) as store:
        migrated = await store.list_version("ip-block")
        assert migrated != await store.list_version("ip-allow")  # seeded, not "never written"
        other = sqlite3.connect(path, isolation_level=None)
        try:  # another writer of the file, with plain SQL: the triggers move the token
            other.execute("DELETE FROM list_members WHERE list = 'ip-block'")
            after_delete = await store.list_version("ip-block")
            other.execute(
                "INSERT INTO list_members (list, member, comment, added, expires) VALUES (?, ?, '', 0, NULL)",
                ("ip-block", "192.0.2.0/24"),
            )
            after_insert = await store.list_version("ip-block")
            other.execute("UPDATE list_members SET comment = 'x' WHERE list = 'ip-block'")
            after_update = await store.list_version("ip-block")
        finally:
            other.close()
        assert len({migrated, after_delete, after_insert, after_update}) == 4


async def test_a_corrupt_file_is_refused_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "policy.db"
    path.write_bytes(b"this is not an SQLite database" * 100)
    store = SqlitePolicyStore(path)
    with pytest.raises(PolicyStoreError, match="not a database"):
        await store.open()
    await store.close()


async def test_an_unreadable_folder_is_a_policy_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = SqlitePolicyStore(blocker / "policy.db")
    with pytest.raises(PolicyStoreError):
        await store.open()


async def test_the_file_is_private_and_survives_reopening(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "state" / "policy.db"
    async with SqlitePolicyStore(path, clock=clock) as store:
        await store.set("rep:x", "kept")
        await store.list_add("ip-allow", "192.0.2.0/24", comment="office")
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    async with SqlitePolicyStore(path, clock=clock) as again:
        assert await again.get("rep:x") == "kept"
        entry = await again.list_get("ip-allow", "192.0.2.0/24")
        assert entry is not None and entry.comment == "office"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand files to the service user")
async def test_a_file_created_by_root_is_handed_to_the_service_user(tmp_path: Path) -> None:
    import pwd

    service = pwd.getpwnam("edgeward")
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, service.pw_uid, service.pw_gid)
    # An administrator's CLI command (as root) is the first to open the store.
    async with SqlitePolicyStore(data / "state" / "policy.db") as store:
        await store.list_add("ip-block", "198.51.100.7", comment="added by an administrator")
        files = [data / "state", *(data / "state").iterdir()]
        assert {f.name for f in files} >= {"state", "policy.db", "policy.db-wal", "policy.db-shm"}
        assert {(f.name, f.stat().st_uid) for f in files} == {(f.name, service.pw_uid) for f in files}


async def test_the_fake_can_be_repaired(clock: FakeClock) -> None:
    store = MemoryPolicyStore(clock)
    await store.set("k", "v")
    store.break_down("database is locked")
    with pytest.raises(PolicyStoreError, match="locked"):
        await store.get("k")
    store.repair()
    assert await store.get("k") == "v"
