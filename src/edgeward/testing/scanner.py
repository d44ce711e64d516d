"""A scan engine fake: byte patterns stand for signatures, and the engine can be made to fail.

``FakeScanner({b"pattern": "Name"})`` reports ``AV_INFECTED`` with signature ``Name`` for every
item holding ``pattern`` (the first pattern found per item, as clamd reports one signature per
item). It keeps clamd's contract (``tests/testing/test_scanner.py`` runs both through one
suite): an item over ``max_stream`` raises :class:`~edgeward.scanning.ItemTooLarge` before
anything is scanned, an engine that is ``down`` raises :class:`~edgeward.ports.ScanEngineError`
and reports itself unhealthy, and so does one set ``failing`` (an engine that answers garbage).
``delay`` makes every scan take that long, for the policy's time limits; ``scanned`` records
what each call was given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from edgeward.ports import EngineStatus, ScanEngineError, ScanHit, ScanItem
from edgeward.scanning import ItemTooLarge


class FakeScanner:
    """An in-memory engine with switchable faults."""

    def __init__(
        self,
        signatures: Mapping[bytes, str] | None = None,
        *,
        name: str = "fake",
        finding: str = "AV_INFECTED",
        max_stream: int = 25 * 1024 * 1024,
        delay: float = 0.0,
        version: str = "FakeScanner 1",
        signatures_at: float | None = None,
    ) -> None:
        self.name = name
        self.signatures = dict(signatures or {})
        self.finding = finding
        self.max_stream = max_stream
        self.delay = delay
        self.version = version
        self.signatures_at = signatures_at
        self.down = False
        self.failing = False
        self.scanned: list[tuple[ScanItem, ...]] = []

    async def scan(self, items: Sequence[ScanItem]) -> list[ScanHit]:
        self.scanned.append(tuple(items))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise ScanEngineError(f"{self.name} is unreachable: Connection refused")
        if self.failing:
            raise ScanEngineError(f"{self.name}: unreadable answer")
        for item in items:
            if len(item.data) > self.max_stream:
                raise ItemTooLarge(f"{self.name}: {item.path} is over {self.max_stream} bytes")
        hits: list[ScanHit] = []
        for item in items:
            for pattern, signature in self.signatures.items():
                if pattern in item.data:
                    hits.append(ScanHit(self.finding, self.name, signature, item.path))
                    break
        return hits

    async def status(self) -> EngineStatus:
        if self.down or self.failing:
            return EngineStatus(self.name, False, detail=f"{self.name} is unreachable")
        return EngineStatus(self.name, True, self.version, self.signatures_at)
