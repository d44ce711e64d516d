"""Cost of one PolicyStore call: the SQLite store (with and without group commit), the Redis
store (a private redis-server on loopback TCP and on a unix socket) and the fake.

For each operation an agent makes per message (``incr`` of a rate counter, ``get`` of a
reputation, ``list_get`` on an allow list) it prints microseconds per call, wall and CPU of this
process, once for calls made one after another and once for ``--sessions`` tasks calling at
the same time, which is how the receiving process uses the store. ``--max-batch 1`` shows the
store without group commit (one transaction per call). The Redis rows are skipped with a notice
when redis-server is not installed; the server's CPU is not in the CPU column (it is another
process), so those rows add it per call in a last column.

    .venv/bin/python bench/policystore_bench.py [--calls 4000] [--sessions 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from tests.redisserver import REDIS_SERVER, RedisServer  # noqa: E402

from edgeward.ports import PolicyStore  # noqa: E402
from edgeward.state.policy import SqlitePolicyStore  # noqa: E402
from edgeward.state.redis_policy import RedisPolicyStore  # noqa: E402
from edgeward.testing.policystore import MemoryPolicyStore  # noqa: E402

Op = Callable[[PolicyStore, int], Awaitable[object]]

OPS: dict[str, Op] = {
    "incr": lambda s, i: s.incr(f"rate:msg:192.0.2.{i % 50}", window=60),
    "get": lambda s, i: s.get(f"rate:msg:192.0.2.{i % 50}"),
    "list_get": lambda s, i: s.list_get("ip-allow", f"198.51.100.{i % 50}"),
    # The sender filter's question: an address, its domain and the domain's parent.
    "list_get_many": lambda s, i: s.list_get_many(
        "sender-block", [f"u{i % 50}@mail.example.org", "@mail.example.org", "@example.org"]
    ),
    "list_version": lambda s, i: s.list_version("ip-block"),
}


async def measure(store: PolicyStore, op: Op, calls: int, sessions: int) -> tuple[float, float, float]:
    """(sequential wall, concurrent wall, concurrent CPU) in microseconds per call."""
    start = time.perf_counter()
    for i in range(calls):
        await op(store, i)
    sequential = (time.perf_counter() - start) / calls

    async def session(n: int) -> None:
        for i in range(calls // sessions):
            await op(store, i * sessions + n)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(session(n) for n in range(sessions)))
    done = calls // sessions * sessions
    return (
        sequential * 1e6,
        (time.perf_counter() - start) / done * 1e6,
        (time.process_time() - cpu) / done * 1e6,
    )


async def bench_redis(server: RedisServer, label: str, args: argparse.Namespace) -> None:
    """The Redis rows, with the server's CPU per call (user + system, from INFO) at the end."""
    with server.client() as raw:

        def server_cpu() -> float:
            info = raw.info("cpu")
            return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

        async with RedisPolicyStore(server.url) as store:
            for i in range(50):
                await store.list_add("ip-allow", f"198.51.100.{i}", comment="bench")
            for name, op in OPS.items():
                before = server_cpu()
                seq, conc, cpu = await measure(store, op, args.calls, args.sessions)
                on_server = (server_cpu() - before) / (2 * args.calls) * 1e6
                row = f"{label:<22}{name:<14}{seq:>12.0f}{conc:>12.0f}{cpu:>10.0f}"
                print(f"{row}{on_server:>10.0f} (server)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--sessions", type=int, default=20)
    args = parser.parse_args()
    print(f"{'store':<22}{'call':<14}{'sequential':>12}{'concurrent':>12}{'CPU/call':>10}   (us)")
    with tempfile.TemporaryDirectory() as tmp:
        for label, max_batch in (("sqlite group commit", 128), ("sqlite one per call", 1)):
            path = Path(tmp) / f"policy-{max_batch}.db"
            async with SqlitePolicyStore(path, max_batch=max_batch) as store:
                for i in range(50):
                    await store.list_add("ip-allow", f"198.51.100.{i}", comment="bench")
                for name, op in OPS.items():
                    seq, conc, cpu = await measure(store, op, args.calls, args.sessions)
                    print(f"{label:<22}{name:<14}{seq:>12.0f}{conc:>12.0f}{cpu:>10.0f}")
        if REDIS_SERVER is None:
            print("redis: skipped, redis-server is not installed")
        for unix in (False, True) if REDIS_SERVER is not None else ():
            server = RedisServer(Path(tmp), unix_socket=unix).start()
            try:
                await bench_redis(server, "redis unix socket" if unix else "redis tcp loopback", args)
            finally:
                server.stop()
        memory = MemoryPolicyStore()
        for name, op in OPS.items():
            seq, conc, cpu = await measure(memory, op, args.calls, args.sessions)
            print(f"{'memory (fake)':<22}{name:<14}{seq:>12.1f}{conc:>12.1f}{cpu:>10.1f}")


if __name__ == "__main__":
    asyncio.run(main())
