"""Policy-store calls asked at once, so a store answers them in one trip.

An agent that awaits its calls one after another pays a trip for each: a hop to the SQLite
worker thread for a write, a Redis round trip for anything. :func:`together` asks several calls
at once, so the SQLite store runs them as one batch (``state.batch``) and the Redis store sends
them in one pipeline (``state.redis_batch``); :func:`list_first` asks one list about several
members in a single call (``list_get_many``).

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
