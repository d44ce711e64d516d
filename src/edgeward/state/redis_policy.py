"""The :class:`edgeward.ports.PolicyStore` several gateways share: Redis, through ``redis.asyncio``.

Reputation, greylisting triplets, rate counters and the allow/block and safe-sender lists live
on one Redis server under a configurable key prefix (two deployments can share a server), so a
client counted or listed by one gateway is counted or listed by all of them. The key layout and
the server-side scripts are in :mod:`edgeward.state.redis_scripts`: every write is one Lua
script, atomic on the server, so ``add`` and ``incr`` hold across gateways exactly as
``BEGIN IMMEDIATE`` makes them hold across the processes sharing the SQLite file.

Expiry keeps the port's promise. The expiry stored with each key and member is the injected
clock's wall time, and every read compares it with that clock, so an expired entry is absent
at once for every method (and a test drives it with a fake clock). Beside it the server gets a
PEXPIRE of the same remaining time so it reclaims the space itself; it is measured on the
server's own clock from the moment of the write, so a clock skew between a gateway and the
server never makes the server drop an entry before the gateways consider it expired (an
absolute PEXPIREAT from the gateway's clock would). Redis records it as PEXPIREAT for its
replicas and AOF. List members cannot expire one by one on the server: ``purge_expired``
removes them, and a list's keys expire with its last member.

Faults: a refused or dropped connection, a time-out, a failed AUTH, an OOM, READONLY, LOADING
or BUSY reply, and data under the prefix that is not ours all raise
:class:`~edgeward.ports.PolicyStoreError`, so agents answer ``451 4.3.0`` or their fail-open
finding; a caller's mistake is a ``ValueError`` as with the other stores. Nothing is retried
blindly (a repeated ``incr`` or ``add`` whose reply was lost would count twice or refuse its
own write): a connection the server closed is noticed when it is taken from the pool and
replaced, so the store reconnects by itself once Redis is back, without a restart.

Calls made while a pipeline is on the wire share the next one (:mod:`edgeward.state.redis_batch`,
the counterpart of the SQLite store's group commit), and a call made is a call finished: a
caller's cancellation (a session closing, an agent time-out) does not take its command back.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from edgeward.ports import Clock, ListEntry, PolicyStoreError, StoredValue, SystemClock
from edgeward.state import redis_scripts as lua
from edgeward.state.policy import check_name, check_ttl, check_value
from edgeward.state.redis_batch import PipelineRunner
from edgeward.state.redis_replies import (
    NotOurs,
    decode_expiry,
    decode_text,
    is_expired,
    raw_bytes,
    value_pair,
)

__all__ = ["RedisPolicyStore", "escape_glob"]

T = TypeVar("T")

_SCAN_COUNT = 1000
_FETCH_BATCH = 500
_GLOB_SPECIAL = frozenset("*?[]\\")
_INT64 = range(-(2**63), 2**63)


def escape_glob(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern (``*?[]`` and backslash escaped)."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


class RedisPolicyStore:
    """A :class:`edgeward.ports.PolicyStore` on the Redis server at ``url``.

    ``url`` is ``redis://host:port/db``, ``rediss://`` for TLS or ``unix:///path/redis.sock``;
    the password comes apart (``password``, read from a file by the caller), never in the URL.
    ``timeout`` bounds connecting, each reply and the wait for a free pooled connection.
    ``open`` checks the server answers; calls made before it or while Redis is down connect
    on their own.
    """

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        prefix: str = "edgeward:",
        timeout: float = 2.0,
        max_connections: int = 16,
        ca_file: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be positive seconds")
        self.url = url
        self.prefix = prefix
        self._password = password
        self._timeout = timeout
        self._max_connections = max_connections
        self._ca_file = ca_file
        self._clock = clock if clock is not None else SystemClock()
        self._redis: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._texts: dict[str, str] = {}  # SHA1 -> script, for a server that lost its scripts
        self._closed = False
        self._pipeline = PipelineRunner()

    def __repr__(self) -> str:
        return f"RedisPolicyStore({self.url!r}, prefix={self.prefix!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and check that the server answers; raises PolicyStoreError if it does not."""
        self._closed = False
        await self._command(("PING",))

    async def close(self) -> None:
        self._closed = True
        await self._pipeline.wait_idle()
        if self._redis is not None:
            client, self._redis = self._redis, None
            self._scripts.clear()
            await client.aclose()
            await client.connection_pool.disconnect()

    async def __aenter__(self) -> RedisPolicyStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _client(self) -> Redis:
        if self._redis is None:
            extra: dict[str, Any] = {}
            if self._ca_file is not None:
                extra["ssl_ca_certs"] = self._ca_file
            pool = BlockingConnectionPool.from_url(
                self.url,
                password=self._password,
                max_connections=self._max_connections,
                timeout=self._timeout,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=Retry(NoBackoff(), 0),
                **extra,
            )
            self._redis = Redis.from_pool(pool)
            for name, text in _SCRIPTS.items():
                self._scripts[name] = self._redis.register_script(text)
                self._texts[self._scripts[name].sha] = text
        return self._redis

    def _ready(self) -> Redis:
        if self._closed:
            raise PolicyStoreError(f"policy store {self.url}: closed")
        try:
            return self._client()
        except (ValueError, RedisError) as exc:  # an unusable URL
            raise PolicyStoreError(f"policy store {self.url}: {exc}") from None

    async def _command(self, command: tuple[Any, ...], parse: Callable[[Any], T] = lambda r: r) -> T:
        """One command, sent with whatever else is asked meanwhile (``state/redis_batch.py``)."""
        client = self._ready()
        reply = self._pipeline.submit(client, command, self._texts)

        async def parsed() -> T:
            return parse(await reply)

        return await self._translated(parsed())

    async def _run(self, fn: Callable[[Redis], Awaitable[T]]) -> T:
        """Work of several round trips (scan, purge) on a connection of its own."""
        return await self._translated(fn(self._ready()))

    async def _translated(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except ResponseError as exc:
            if str(exc).startswith(lua.NOT_INTEGER):
                raise ValueError("value is not an integer counter") from None
            raise PolicyStoreError(f"policy store {self.url}: {exc}") from None
        except (TimeoutError, RedisError, OSError) as exc:
            raise PolicyStoreError(f"policy store {self.url}: {_describe(exc)}") from None
        except (UnicodeDecodeError, NotOurs):
            problem = f"data under {self.prefix!r} is not ours"
            raise PolicyStoreError(f"policy store {self.url}: {problem}") from None

    async def _script(self, name: str, keys: Sequence[bytes], args: Sequence[str | bytes]) -> Any:
        self._ready()
        return await self._command(("EVALSHA", self._scripts[name].sha, len(keys), *keys, *args))

    # -- keys --------------------------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        return f"{self.prefix}k:{key}".encode()

    async def get(self, key: str) -> str | None:
        check_name("key", key)
        now = self._clock.now()

        def parse(reply: object) -> str | None:
            value, expires = value_pair(reply)
            return None if value is None or is_expired(expires, now) else decode_text(value)

        return await self._command(("HMGET", self._key(key), "v", "x"), parse)

    async def set(self, key: str, value: str, *, ttl: float | None = None) -> None:
        check_name("key", key)
        check_ttl(ttl)
        check_value(value)
        await self._script("set", [self._key(key)], self._write_args(value.encode(), ttl))

    async def add(self, key: str, value: str, *, ttl: float | None = None) -> bool:
        check_name("key", key)
        check_ttl(ttl)
        check_value(value)
        return bool(await self._script("add", [self._key(key)], self._write_args(value.encode(), ttl)))

    def _write_args(self, value: bytes, ttl: float | None) -> list[str | bytes]:
        now = self._clock.now()
        if ttl is None:
            return [repr(now), value, "", ""]
        return [repr(now), value, repr(now + ttl), str(_millis(ttl))]

    async def delete(self, key: str) -> bool:
        check_name("key", key)
        return bool(await self._script("delete", [self._key(key)], [repr(self._clock.now())]))

    async def incr(self, key: str, *, window: float, amount: int = 1) -> int:
        check_name("key", key)
        check_ttl(window)
        _check_amount(amount)
        try:
            return int(
                await self._script("incr", [self._key(key)], _incr_args(self._clock.now(), amount, window))
            )
        except ValueError:
            raise ValueError(f"{key}: value is not an integer counter") from None

    async def incr_many(self, counts: Mapping[str, int], *, window: float) -> dict[str, int]:
        check_ttl(window)
        for key, amount in counts.items():
            check_name("key", key)
            _check_amount(amount)
        if not counts:
            return {}
        client = self._ready()
        now = self._clock.now()
        sha = self._scripts["incr"].sha
        # Submitted together, so they share one pipeline; every reply is awaited before any
        # failure is raised, so none is left unobserved.
        replies = [
            self._pipeline.submit(
                client, ("EVALSHA", sha, 1, self._key(k), *_incr_args(now, a, window)), self._texts
            )
            for k, a in counts.items()
        ]

        async def parsed() -> dict[str, int]:
            done: list[Any] = await asyncio.gather(*replies, return_exceptions=True)
            if failed := next((r for r in done if isinstance(r, BaseException)), None):
                raise failed
            return {key: int(reply) for key, reply in zip(counts, done, strict=True)}

        try:
            return await self._translated(parsed())
        except ValueError:
            raise ValueError("a counter's value is not an integer") from None

    async def scan(self, prefix: str, *, limit: int | None = None) -> list[StoredValue]:
        now = self._clock.now()
        head = f"{self.prefix}k:".encode()
        pattern = escape_glob(f"{self.prefix}k:{prefix}") + "*"

        async def run(r: Redis) -> list[StoredValue]:
            names = sorted({bytes(k) async for k in r.scan_iter(match=pattern.encode(), count=_SCAN_COUNT)})
            found: list[StoredValue] = []
            for start in range(0, len(names), _FETCH_BATCH):
                batch = names[start : start + _FETCH_BATCH]
                async with r.pipeline(transaction=False) as pipe:
                    for name in batch:
                        pipe.hmget(name, ["v", "x"])
                    rows = await pipe.execute()
                for name, row in zip(batch, rows, strict=True):
                    value, expires = value_pair(row)
                    if value is not None and not is_expired(expires, now):  # else gone or expired
                        found.append(
                            StoredValue(
                                decode_text(name[len(head) :]), decode_text(value), decode_expiry(expires)
                            )
                        )
            # Keys sort as their UTF-8 bytes, which is code point order, as the other stores give.
            return found

        found = await self._run(run)
        return found if limit is None else found[: max(limit, 0)]

    # -- lists -------------------------------------------------------------------------------

    def _list_keys(self, name: str) -> list[bytes]:
        """The list's sorted set, member hash and version token (``state.redis_scripts``)."""
        return [
            f"{self.prefix}l:{name}".encode(),
            f"{self.prefix}m:{name}".encode(),
            f"{self.prefix}v:{name}".encode(),
        ]

    async def list_add(self, name: str, member: str, *, comment: str = "", ttl: float | None = None) -> None:
        check_name("list name", name)
        check_name("member", member)
        check_ttl(ttl)
        check_value(comment)
        now = self._clock.now()
        expires = None if ttl is None else now + ttl
        meta = json.dumps({"c": comment, "a": now, "x": expires}, ensure_ascii=False)
        score = "inf" if expires is None else repr(expires)
        args: list[str | bytes] = [repr(now), member.encode(), score, meta.encode(), _new_token()]
        await self._script("list_add", self._list_keys(name), args)

    async def list_remove(self, name: str, member: str) -> bool:
        check_name("list name", name)
        check_name("member", member)
        args: list[str | bytes] = [repr(self._clock.now()), member.encode(), _new_token()]
        return bool(await self._script("list_remove", self._list_keys(name), args))

    async def list_get(self, name: str, member: str) -> ListEntry | None:
        check_name("list name", name)
        check_name("member", member)
        now = self._clock.now()

        def parse(reply: object) -> ListEntry | None:
            raw = raw_bytes(reply)
            return None if raw is None else self._entry(member, raw, now)

        return await self._command(("HGET", self._list_keys(name)[1], member.encode()), parse)

    async def list_get_many(self, name: str, members: Sequence[str]) -> list[ListEntry | None]:
        check_name("list name", name)
        for member in members:
            check_name("member", member)
        wanted = tuple(members)
        if not wanted:
            return []
        now = self._clock.now()

        def parse(reply: object) -> list[ListEntry | None]:
            if not isinstance(reply, list) or len(reply) != len(wanted):
                raise NotOurs
            raws = [raw_bytes(r) for r in reply]
            return [None if r is None else self._entry(m, r, now) for m, r in zip(wanted, raws, strict=True)]

        command = ("HMGET", self._list_keys(name)[1], *(m.encode() for m in wanted))
        return await self._command(command, parse)

    async def list_members(self, name: str) -> list[ListEntry]:
        check_name("list name", name)
        now = self._clock.now()

        def parse(reply: object) -> list[ListEntry]:
            if not isinstance(reply, dict):
                raise NotOurs
            entries = (self._entry(decode_text(m), decode_text(raw), now) for m, raw in reply.items())
            return sorted((e for e in entries if e is not None), key=lambda e: e.member)

        return await self._command(("HGETALL", self._list_keys(name)[1]), parse)

    async def list_version(self, name: str) -> str:
        check_name("list name", name)

        def parse(reply: object) -> str:
            raw = raw_bytes(reply)
            return "never written" if raw is None else decode_text(raw)

        return await self._command(("GET", self._list_keys(name)[2]), parse)

    def _entry(self, member: str, raw: bytes | str, now: float) -> ListEntry | None:
        try:
            meta = json.loads(decode_text(raw))
            entry = ListEntry(member, str(meta["c"]), float(meta["a"]), decode_expiry(meta["x"]))
        except (ValueError, KeyError, TypeError):
            raise NotOurs from None
        if entry.expires_at is not None and entry.expires_at <= now:
            return None
        return entry

    async def purge_expired(self) -> int:
        now = repr(self._clock.now())
        values = escape_glob(f"{self.prefix}k:") + "*"
        lists = escape_glob(f"{self.prefix}l:") + "*"
        meta_head = f"{self.prefix}m:".encode()
        list_head = f"{self.prefix}l:".encode()

        async def run(r: Redis) -> int:
            dropped = 0
            batch: list[bytes] = []
            async for name in r.scan_iter(match=values.encode(), count=_SCAN_COUNT):
                batch.append(bytes(name))
                if len(batch) == _FETCH_BATCH:
                    dropped += int(await self._scripts["purge_keys"](keys=batch, args=[now], client=r))
                    batch = []
            if batch:
                dropped += int(await self._scripts["purge_keys"](keys=batch, args=[now], client=r))
            async for name in r.scan_iter(match=lists.encode(), count=_SCAN_COUNT):
                zset = bytes(name)
                meta = meta_head + zset[len(list_head) :]
                dropped += int(await self._scripts["list_purge"](keys=[zset, meta], args=[now], client=r))
            return dropped

        return await self._run(run)


_SCRIPTS = {
    "set": lua.SET,
    "add": lua.ADD,
    "delete": lua.DELETE,
    "incr": lua.INCR,
    "purge_keys": lua.PURGE_KEYS,
    "list_add": lua.LIST_ADD,
    "list_remove": lua.LIST_REMOVE,
    "list_purge": lua.LIST_PURGE,
}


def _new_token() -> str:
    # Random, not a counter: after a FLUSHDB or a restore, a counter would start again at 1 and
    # could hand a reader the token it cached for other contents.
    return secrets.token_hex(8)


def _check_amount(amount: object) -> None:
    if not isinstance(amount, int) or amount not in _INT64:
        raise ValueError("amount must be a 64-bit integer")


def _incr_args(now: float, amount: int, window: float) -> list[str]:
    """The incr script's arguments: now, the amount, the window's end and its length in ms."""
    return [repr(now), str(amount), repr(now + window), str(_millis(window))]


def _millis(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, TimeoutError) and not text:
        return "timed out"
    return text or type(exc).__name__
