"""Policy-store calls asked at once, so both backends answer them in one round trip.

The SQLite store runs the calls queued while a batch is in its worker thread as the next batch
(``state.batch``), and the Redis store pipelines the commands sent together
(``state.redis_batch``). An agent that awaits its lookups one after another pays a hop to the
worker thread, or a network round trip, for each; with one session that is most of the time
its message spends in the store. Asked together they share one.

Lookups asked together all run, where a loop would have stopped at the first hit: they are
reads, so the extra ones cost a row each and change nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from typing import TypeVar

from edgeward.ports import PolicyStore

__all__ = ["list_first", "together"]

T = TypeVar("T")


async def together(calls: Iterable[Awaitable[T]]) -> list[T]:
    """The results of ``calls``, asked at once; the first failure is raised after all ended.

    Waiting for every call before raising keeps a failed lookup from leaving its siblings
    running unobserved ("exception was never retrieved").
    """
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]  # no exception is left in it


async def list_first(store: PolicyStore, name: str, members: Sequence[str]) -> str | None:
    """The first of ``members``, in their order, that list ``name`` holds; None when none does."""
    entries = await store.list_get_many(name, members)
    return next((m for m, entry in zip(members, entries, strict=True) if entry is not None), None)
