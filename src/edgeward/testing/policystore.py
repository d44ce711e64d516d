"""A :class:`edgeward.ports.PolicyStore` held in memory, for tests of the agents' logic.

It keeps the same promises as ``edgeward.state.policy.SqlitePolicyStore`` (the conformance
suite in ``tests/testing/`` runs against both): expiry by the injected clock, invisible at
once to every method; fixed-window counters; lists whose members expire one by one; the same
``ValueError`` for a caller's mistakes. :meth:`MemoryPolicyStore.break_down` makes every
method raise :class:`~edgeward.ports.PolicyStoreError`, which is how a test shows that an
agent answers ``451`` (or records a finding) when the real store is locked or corrupt.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edgeward.ports import Clock, ListEntry, PolicyStoreError, StoredValue, SystemClock
from edgeward.state.policy import check_name, check_ttl, check_value

__all__ = ["MemoryPolicyStore"]


@dataclass(slots=True)
class _Value:
    value: str
    expires: float | None


class MemoryPolicyStore:
    """Keys and lists in dictionaries; ``clock`` decides what has expired."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock if clock is not None else SystemClock()
        self._kv: dict[str, _Value] = {}
        self._lists: dict[str, dict[str, ListEntry]] = {}
        self._versions: dict[str, str] = {}
        self._fault: str | None = None

    def break_down(self, reason: str = "database disk image is malformed") -> None:
        """From now on every method raises PolicyStoreError(reason), as a corrupt file would."""
        self._fault = reason

    def repair(self) -> None:
        self._fault = None

    def _now(self) -> float:
        if self._fault is not None:
            raise PolicyStoreError(f"policy store: {self._fault}")
        return self._clock.now()

    def _live(self, key: str, now: float) -> _Value | None:
        found = self._kv.get(key)
        if found is None or (found.expires is not None and found.expires <= now):
            return None
        return found

    @staticmethod
    def _live_entry(entry: ListEntry | None, now: float) -> ListEntry | None:
        if entry is None or (entry.expires_at is not None and entry.expires_at <= now):
            return None
        return entry

    async def get(self, key: str) -> str | None:
        check_name("key", key)
        found = self._live(key, self._now())
        return None if found is None else found.value

    async def set(self, key: str, value: str, *, ttl: float | None = None) -> None:
        check_name("key", key)
        check_ttl(ttl)
        check_value(value)
        now = self._now()
        self._kv[key] = _Value(value, None if ttl is None else now + ttl)

    async def add(self, key: str, value: str, *, ttl: float | None = None) -> bool:
        check_name("key", key)
        check_ttl(ttl)
        check_value(value)
        now = self._now()
        if self._live(key, now) is not None:
            return False
        self._kv[key] = _Value(value, None if ttl is None else now + ttl)
        return True

    async def delete(self, key: str) -> bool:
        check_name("key", key)
        now = self._now()
        was_live = self._live(key, now) is not None
        self._kv.pop(key, None)
        return was_live

    async def incr(self, key: str, *, window: float, amount: int = 1) -> int:
        check_name("key", key)
        check_ttl(window)
        now = self._now()
        found = self._live(key, now)
        if found is None:
            self._kv[key] = _Value(str(amount), now + window)
            return amount
        try:
            count = int(found.value) + amount
        except ValueError:
            raise ValueError(f"{key}: value is not an integer counter") from None
        found.value = str(count)
        return count

    async def incr_many(self, counts: Mapping[str, int], *, window: float) -> dict[str, int]:
        for key in counts:
            check_name("key", key)
        check_ttl(window)
        return {key: await self.incr(key, window=window, amount=amount) for key, amount in counts.items()}

    async def scan(self, prefix: str, *, limit: int | None = None) -> list[StoredValue]:
        now = self._now()
        found = [
            StoredValue(k, v.value, v.expires)
            for k, v in sorted(self._kv.items())
            if k.startswith(prefix) and self._live(k, now) is not None
        ]
        return found if limit is None else found[: max(limit, 0)]

    async def list_add(self, name: str, member: str, *, comment: str = "", ttl: float | None = None) -> None:
        check_name("list name", name)
        check_name("member", member)
        check_ttl(ttl)
        check_value(comment)
        now = self._now()
        entry = ListEntry(member, comment, now, None if ttl is None else now + ttl)
        self._lists.setdefault(name, {})[member] = entry
        self._versions[name] = secrets.token_hex(8)

    async def list_remove(self, name: str, member: str) -> bool:
        check_name("list name", name)
        check_name("member", member)
        now = self._now()
        entry = self._lists.get(name, {}).pop(member, None)
        self._versions[name] = secrets.token_hex(8)
        return self._live_entry(entry, now) is not None

    async def list_get(self, name: str, member: str) -> ListEntry | None:
        check_name("list name", name)
        check_name("member", member)
        return self._live_entry(self._lists.get(name, {}).get(member), self._now())

    async def list_get_many(self, name: str, members: Sequence[str]) -> list[ListEntry | None]:
        check_name("list name", name)
        for member in members:
            check_name("member", member)
        return [await self.list_get(name, member) for member in members]

    async def list_members(self, name: str) -> list[ListEntry]:
        check_name("list name", name)
        now = self._now()
        members = self._lists.get(name, {})
        return [e for m, e in sorted(members.items()) if self._live_entry(e, now) is not None]

    async def list_version(self, name: str) -> str:
        check_name("list name", name)
        self._now()  # a broken fake raises here, as the other reads do
        return self._versions.get(name, "never written")

    async def purge_expired(self) -> int:
        now = self._now()
        dead = [k for k in self._kv if self._live(k, now) is None]
        for key in dead:
            del self._kv[key]
        count = len(dead)
        for members in self._lists.values():
            gone = [m for m, e in members.items() if self._live_entry(e, now) is None]
            for member in gone:
                del members[member]
            count += len(gone)
        return count
