"""Supervision of the gateway's background tasks: a task that dies is logged and started again.

The queue manager, the certificate upkeep and the quarantine retention each run as one
long-lived asyncio task. Each loop catches what it expects, but a task that raises anyway must
not end quietly while the process lives on (a delivery process that delivers nothing looks
healthy from outside). :class:`TaskSupervisor` runs each under a watcher, Erlang's one-for-one
restart: an exception is logged with its traceback at ERROR, and after a pause the task is
started again from its factory. The pause doubles with each death in a row, from
``first_pause`` up to ``max_pause``, so a task that dies at once on every start is not
restarted in a tight loop; a run that lasted ``healthy_after`` seconds starts the count afresh.

A task that returns has finished its work (the queue manager returns once stopped) and is not
restarted. :meth:`TaskSupervisor.retire` ends all restarting at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from edgeward.ports import Clock, SystemClock

__all__ = ["TaskSupervisor"]

log = logging.getLogger("edgeward.tasks")


class TaskSupervisor:
    """Starts named background tasks and restarts the ones that die. See the module docstring."""

    def __init__(
        self,
        *,
        first_pause: float = 1.0,
        max_pause: float = 300.0,
        healthy_after: float = 600.0,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock if clock is not None else SystemClock()
        self.first_pause = first_pause
        self.max_pause = max_pause
        self.healthy_after = healthy_after
        self.restarts: dict[str, int] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._retired = False

    def start(self, name: str, factory: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``factory()`` under supervision; ``name`` appears in every log line about it."""
        if name in self._watchers and not self._watchers[name].done():
            raise RuntimeError(f"a background task named {name!r} already runs")
        self.restarts.setdefault(name, 0)
        watcher = asyncio.get_running_loop().create_task(self._watch(name, factory), name=name)
        self._watchers[name] = watcher
        return watcher

    async def _watch(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        pause = self.first_pause
        while True:
            started = self._clock.monotonic()
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._retired:
                    log.exception("background task %s failed while stopping", name)
                    return
                if self._clock.monotonic() - started >= self.healthy_after:
                    pause = self.first_pause
                self.restarts[name] += 1
                log.exception(
                    "background task %s died (restart %d); starting it again in %gs",
                    name, self.restarts[name], pause,
                )  # fmt: skip
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.max_pause)
                if self._retired:
                    return
                log.warning("background task %s restarted", name)
                continue
            return

    def retire(self) -> None:
        """No more restarts: the gateway is stopping."""
        self._retired = True

    async def wait(self, name: str, within: float) -> bool:
        """Wait up to ``within`` seconds for ``name`` to end on its own; False if it did not."""
        watcher = self._watchers.get(name)
        if watcher is None:
            return True
        done, _ = await asyncio.wait([watcher], timeout=within)
        return bool(done)

    async def cancel(self, *names: str) -> None:
        """Cancel the named tasks (all of them if none are named) and wait until they end."""
        self._retired = True
        watchers = [w for n, w in self._watchers.items() if not names or n in names]
        for watcher in watchers:
            watcher.cancel()
        for watcher in watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
