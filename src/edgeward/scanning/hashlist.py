"""The SHA-256 block list: attachments whose exact content is known bad.

The list is a text file of ``sha256 [name]`` lines; ``#`` starts a comment, blank lines are
skipped, the hash may be upper or lower case, the name (what the finding reports, the hash
itself when absent) is the rest of the line. It is re-read when its size or mtime changes
(checked at most every ``check_every`` seconds on a scan or :meth:`HashListEngine.status`) and
on :meth:`HashListEngine.reload`, which ``edgeward av update`` and the update task call.

Decisions: a malformed line is skipped and counted, and ``status()`` names the first few
line numbers, but the engine stays healthy: one typo must not stop every other hash being
checked (nor, through the multi-engine policy, turn all mail away with a 451). A list that
cannot be read keeps the last good one and makes the engine unhealthy; a list never read
successfully makes every scan raise :class:`ScanEngineError` (an engine with nothing loaded
answers nothing, it never answers "clean").

Security: the file is only read, never executed or expanded; names are cut to
``MAX_NAME`` printable characters so a hostile list cannot forge log lines.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeward.ports import Clock, EngineStatus, ScanEngineError, ScanHit, ScanItem, SystemClock
from edgeward.scanning.watch import FileWatch, Fingerprint

__all__ = ["HashList", "HashListEngine", "parse_hash_list"]

FINDING = "AV_HASH_BLOCKED"
MAX_NAME = 200
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
# Hashing a few kilobytes on the event loop is cheaper than the hop to a thread.
_THREAD_ABOVE = 256 * 1024


@dataclass(frozen=True, slots=True)
class HashList:
    """A parsed list: hash (lower-case hex) -> name, and the line numbers that were malformed."""

    entries: dict[str, str]
    malformed: tuple[int, ...]


def parse_hash_list(text: str) -> HashList:
    entries: dict[str, str] = {}
    malformed: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        digest, _, name = line.partition(" ")
        if not _HEX64.fullmatch(digest):
            malformed.append(number)
            continue
        digest = digest.lower()
        name = _UNPRINTABLE.sub("?", name.strip())[:MAX_NAME]
        entries[digest] = name or digest
    return HashList(entries, tuple(malformed))


def _digests(items: Sequence[ScanItem]) -> list[str]:
    # A partial item (a large leaf of a message kept in a file) carries the digest of its whole
    # content, streamed while it was decoded, so the list still matches it.
    return [item.sha256 if item.partial else hashlib.sha256(item.data).hexdigest() for item in items]


class HashListEngine:
    """A :class:`~edgeward.ports.Scanner` over one SHA-256 list file."""

    name = "hashlist"

    def __init__(self, path: Path, *, clock: Clock | None = None, check_every: float = 5.0) -> None:
        self.path = Path(path)
        self._clock = clock if clock is not None else SystemClock()
        self._watch = FileWatch(lambda: [self.path], clock=self._clock, every=check_every)
        self._list: HashList | None = None
        self._loaded_mtime: float | None = None
        self._error = ""
        self._lock = asyncio.Lock()

    @property
    def size(self) -> int:
        """How many hashes the loaded list holds (0 when none is loaded)."""
        return len(self._list.entries) if self._list is not None else 0

    async def reload(self) -> bool:
        """Read the list now; whether it was read (otherwise the last good list stays)."""
        async with self._lock:
            return await self._load(self._watch.current())

    async def _load(self, seen: Fingerprint) -> bool:
        try:
            # Parsed in the thread too: a list of a million hashes takes about a second.
            parsed, mtime = await asyncio.to_thread(self._read)
        except (OSError, UnicodeDecodeError) as exc:
            self._error = f"cannot read {self.path}: {exc}"
            self._watch.mark(seen)
            return False
        self._list = parsed
        self._loaded_mtime = mtime
        self._error = ""
        self._watch.mark(seen)
        return True

    def _read(self) -> tuple[HashList, float]:
        with self.path.open("rb") as f:
            return parse_hash_list(f.read().decode("utf-8")), os.fstat(f.fileno()).st_mtime

    async def _fresh(self) -> HashList:
        if self._list is None or self._watch.due() is not None:
            async with self._lock:
                seen = self._watch.current()
                # Another scan may have reloaded while this one waited for the lock.
                if (self._list is None and not self._error) or seen != self._watch.seen:
                    await self._load(seen)
        if self._list is None:
            raise ScanEngineError(f"hash list: no list loaded ({self._error or 'not read yet'})")
        return self._list

    async def scan(self, items: Sequence[ScanItem]) -> list[ScanHit]:
        blocked = (await self._fresh()).entries
        items = [item for item in items if item.source is None]  # the whole message: not a file
        if sum(len(item.data) for item in items) > _THREAD_ABOVE:
            digests = await asyncio.to_thread(_digests, items)
        else:
            digests = _digests(items)
        return [
            ScanHit(FINDING, self.name, blocked[digest], item.path)
            for item, digest in zip(items, digests, strict=True)
            if digest in blocked
        ]

    async def status(self) -> EngineStatus:
        try:
            current = await self._fresh()
        except ScanEngineError as exc:
            return EngineStatus(self.name, False, detail=str(exc))
        details = []
        if self._error:
            details.append(f"{self._error}; the last good list is in use")
        if current.malformed:
            shown = ", ".join(str(n) for n in current.malformed[:5])
            more = " ..." if len(current.malformed) > 5 else ""
            details.append(f"{len(current.malformed)} malformed line(s) skipped: {shown}{more}")
        return EngineStatus(
            self.name,
            healthy=not self._error,
            version=f"{len(current.entries)} hashes",
            signatures_at=self._loaded_mtime,
            detail="; ".join(details),
        )
