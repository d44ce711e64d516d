"""The multi-engine policy: Forefront's scan-engine bias over ``ports.Scanner``s.

Every engine scans the same items at once, each under its own time limit, so the slowest
engine, not the sum, sets the delay. The result says what was found, which engines answered and
which did not (and why), and whether the answers are enough to call the message scanned:

- the bias: ``all`` enabled engines answered, a ``majority`` (more than half) or ``any`` (at
  least one); Forefront's "all engines / majority / any" with the same meaning;
- an engine marked ``required`` must answer whatever the bias says;
- no engines at all is never "scanned".

Hits of the engines that answered always count, whether or not the bias was met: a virus one
engine found is not made clean by another engine being down.

With a notifier, the policy remembers which engines are down and emits ``engine_down`` when
an engine stops answering and ``engine_up`` when it answers again: one event per transition,
not one per deferred message. An item too large for an engine is no outage.

A failed engine is not asked again for ``retry_after`` seconds (a circuit breaker): a frozen
clamd would otherwise hold every message for its whole time limit, filling the connection slots
with sessions that end in 451 anyway. Meanwhile the engine counts as not answering at once, so
the bias decides as it would after the timeout (fail closed stays fail closed). When the pause is
over one scan probes the engine (the others keep skipping it for the probe's time limit); an
answer closes the breaker, another failure pauses it again. An item too large for an engine is
no outage and never opens it.

Pure logic over the port: no sockets here, so the unit tests run it with ``FakeScanner``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from edgeward.metrics import observe_scan
from edgeward.notify.events import Event, EventSink
from edgeward.ports import ScanEngineError, ScanHit, ScanItem, Scanner
from edgeward.scanning import ItemTooLarge

Bias = Literal["all", "majority", "any"]


@dataclass(frozen=True, slots=True)
class Engine:
    """One engine as the policy runs it."""

    scanner: Scanner
    timeout: float
    required: bool = False

    @property
    def name(self) -> str:
        return self.scanner.name


@dataclass(frozen=True, slots=True)
class EngineFailure:
    engine: str
    reason: str
    too_large: bool = False  # the engine refused an item for its size: retrying will not help


@dataclass(frozen=True, slots=True)
class ScanReport:
    """What the engines said about one message."""

    hits: tuple[ScanHit, ...]
    answered: tuple[str, ...]
    failed: tuple[EngineFailure, ...]
    scanned: bool  # the bias and every required engine are met

    @property
    def unscannable(self) -> bool:
        """Unscanned only because items are too large for engines (no outage involved)."""
        return not self.scanned and bool(self.failed) and all(f.too_large for f in self.failed)


class MultiEnginePolicy:
    """Run engines concurrently and judge their answers by the bias."""

    def __init__(
        self,
        engines: Sequence[Engine],
        require: Bias = "all",
        notifier: EventSink | None = None,
        *,
        retry_after: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engines = tuple(engines)
        self.require = require
        self.notifier = notifier
        self.retry_after = retry_after
        self._clock = clock
        self.down: dict[str, str] = {}  # engine -> why, while it does not answer
        self.paused: dict[str, tuple[float, str]] = {}  # engine -> (skipped until, why)

    async def scan(self, items: Sequence[ScanItem]) -> ScanReport:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._guarded(engine, items)) for engine in self.engines]
        hits: list[ScanHit] = []
        answered: list[str] = []
        failed: list[EngineFailure] = []
        for engine, task in zip(self.engines, tasks, strict=True):
            result = task.result()
            if isinstance(result, EngineFailure):
                failed.append(result)
            else:
                answered.append(engine.name)
                hits.extend(result)
        report = ScanReport(tuple(hits), tuple(answered), tuple(failed), self._met(answered))
        if self.notifier is not None:
            self._transitions(report)
        return report

    async def _guarded(self, engine: Engine, items: Sequence[ScanItem]) -> list[ScanHit] | EngineFailure:
        """``_run`` behind the engine's breaker."""
        pause = self.paused.get(engine.name)
        now = self._clock()
        if pause is not None:
            until, why = pause
            if now < until:
                return EngineFailure(engine.name, f"{why} (not asked again for {until - now:.0f}s)")
            # This scan probes; concurrent ones skip the engine while it does.
            self.paused[engine.name] = (now + engine.timeout, why)
        result = await _run(engine, items)
        if isinstance(result, EngineFailure):
            if not result.too_large and self.retry_after > 0:
                self.paused[engine.name] = (self._clock() + self.retry_after, result.reason)
        else:
            self.paused.pop(engine.name, None)
        return result

    def _transitions(self, report: ScanReport) -> None:
        assert self.notifier is not None
        for failure in report.failed:
            if failure.too_large or failure.engine in self.down:
                continue
            self.down[failure.engine] = failure.reason
            self.notifier.emit(Event.make(
                "engine_down", "error", f"scan engine {failure.engine} is unavailable: {failure.reason}",
                engine=failure.engine, reason=failure.reason, scanned=report.scanned,
            ))  # fmt: skip
        for name in report.answered:
            if name in self.down:
                reason = self.down.pop(name)
                self.notifier.emit(Event.make(
                    "engine_up", "notice", f"scan engine {name} answers again",
                    engine=name, was=reason,
                ))  # fmt: skip

    def _met(self, answered: Sequence[str]) -> bool:
        total = len(self.engines)
        if not answered or any(e.required and e.name not in answered for e in self.engines):
            return False
        if self.require == "all":
            return len(answered) == total
        if self.require == "majority":
            return 2 * len(answered) > total
        return True


async def _run(engine: Engine, items: Sequence[ScanItem]) -> list[ScanHit] | EngineFailure:
    """One engine's hits, or why it gave none; never raises (but for cancellation)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(engine.timeout):
            return list(await engine.scanner.scan(items))
    except TimeoutError:
        return EngineFailure(engine.name, f"no answer within {engine.timeout:g}s")
    except ItemTooLarge as exc:
        return EngineFailure(engine.name, str(exc), too_large=True)
    except ScanEngineError as exc:
        return EngineFailure(engine.name, str(exc))
    except Exception as exc:
        # A bug in one engine is that engine's outage, not the whole scan's crash.
        return EngineFailure(engine.name, f"{type(exc).__name__}: {exc}")
    finally:
        observe_scan(engine.name, time.perf_counter() - started)
