"""Content scoring in worker processes, started when the receiving process is busy scoring.

Why: the receiving process is one interpreter, so everything it does shares one core, and
under load it is the gateway's bottleneck while the machine's other cores wait
(``bench/README.md``). Scoring a message is pure CPU work with a small answer, the one step
of end of data that moves to another process cheaply: the message's bytes go one way, a
verdict of a few hundred bytes comes back.

When: only while the receiving process is saturated, its CPU time (all its threads) at
:data:`SATURATED` of a core or more over the last :data:`CPU_WINDOW` seconds, until it falls
under :data:`UNSATURATED`. A process with time to spare scores faster itself: the hop to a
worker and back costs more than it saves when nothing else waits for the core (measured:
one session at a time is 7-15 % slower through a worker, ``bench/README.md``). A worker is a
fresh interpreter with the model loaded (tens of MB), so none runs while the gateway is
quiet. Every scoring is measured where it ran: the CPU seconds scored per second, averaged
over :data:`GAUGE_SECONDS`, is the load. When it reaches ``start_load`` (a fraction of a
core) in a saturated process, the workers start; while they start, messages are scored here
as before. When the process was not saturated with that load for ``idle_stop`` seconds
(load under a quarter of ``start_load``, or the process under :data:`UNSATURATED`), they
stop. A message finds a worker with room (at most :data:`DEPTH` messages sent to it and not
answered), or is scored in the calling process, so the receiving process keeps scoring
what the workers cannot take and no message waits behind a full pipe. Messages under
:data:`MIN_SIZE` are always scored in the calling process, where they cost less than the trip.

Each worker is sent the classifier's model file bytes, custom words and accepted domains
before its first message, and again whenever the classifier changes (a reload, or a live
model taught by ``spam learn`` or a release, which the gateway's classifier picks up as
before and the worker then follows).

Failure is closed: a worker that dies, answers nonsense or takes longer than ``timeout``
fails the messages it held with :class:`ScoringWorkerError` (the pipeline answers 451 4.3.0,
the client retries) and is killed; the next one starts on demand, at most every
:data:`RESPAWN_PAUSE` seconds after a failure. A message that kills workers is never scored
in the receiving process instead: what killed a worker (its ``memory_limit``) must not reach
the gateway.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import subprocess
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeward.content.classifier import ContentVerdict, SpamClassifier
from edgeward.content.worker import ANSWER, FRAME, verdict_from_json
from edgeward.worker_process import spawn

__all__ = ["DEPTH", "ScoringWorkerError", "ScoringWorkers"]

log = logging.getLogger("edgeward.content.workers")

# Messages in flight to one worker. Sessions reach end of data in bursts: with 2 a worker
# took half of what a saturated process offered at 20 sessions of 200 KB mail and the rest
# was scored here (133 msg/s); 8 took most (153 msg/s), 16 no more. A failure fails at most
# these messages with a 451, which their clients retry.
DEPTH = 8
GAUGE_SECONDS = 2.0
SATURATED = 0.9
UNSATURATED = 0.75
CPU_WINDOW = 0.5
RESPAWN_PAUSE = 10.0
# Smaller messages are scored where they are: the trip costs the receiving process about
# 0.1 ms of CPU and a 2 KB message costs 0.15 ms to score (20 KB: 0.9 ms; measured on the
# 2-core build machine), so for them the worker's time would be all extra.
MIN_SIZE = 8 * 1024
MAX_ANSWER = 1024 * 1024


class ScoringWorkerError(RuntimeError):
    """A worker could not score the message (it died, timed out or answered an error)."""


Key = tuple[int, int]  # (classifier serial, model version)


@dataclass(eq=False)
class Worker:
    process: subprocess.Popen[bytes]
    writer: asyncio.StreamWriter
    # What each answer still owed is for: (future, model key or None for a score), in order.
    pending: collections.deque[tuple[asyncio.Future[dict[str, Any]], Key | None]] = field(
        default_factory=collections.deque
    )
    loaded: Key | None = None
    loading: Key | None = None
    reader_task: asyncio.Task[None] | None = None
    dead: bool = False


class ScoringWorkers:
    """A pool of up to ``size`` scoring worker processes for one receiving process."""

    def __init__(
        self,
        size: int,
        *,
        start_load: float = 0.05,
        idle_stop: float = 60.0,
        timeout: float = 30.0,
        memory_limit: int = 1024**3,
        min_size: int = MIN_SIZE,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self._workers: list[Worker] = []
        self.configure(size, start_load=start_load, idle_stop=idle_stop, timeout=timeout,
                       memory_limit=memory_limit)  # fmt: skip
        self.min_size = min_size
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._cpu_at = clock()
        self._cpu_used = cpu_clock()
        self.saturated = False
        self._starting = 0
        self._busy = 0.0  # decayed CPU seconds of scoring
        self._busy_at = clock()
        self._high_at = -math.inf  # last time the load was above a quarter of start_load
        self._retry_at = -math.inf
        self._blobs: dict[Key, bytes] = {}
        self._idle_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.started = 0
        self.failed = 0
        self.scored = 0
        # Workers of a pool nobody closed are killed when it is collected or the interpreter ends.
        self._processes: list[subprocess.Popen[bytes]] = []
        self._finalizer = weakref.finalize(self, _kill_all, self._processes)

    def configure(
        self, size: int, *, start_load: float, idle_stop: float, timeout: float, memory_limit: int
    ) -> None:
        """New settings (a reload); running workers beyond ``size`` stop once they are idle."""
        self.size = size
        self.start_load = start_load
        self.idle_stop = idle_stop
        self.timeout = timeout
        self.memory_limit = memory_limit
        for worker in self._workers[size:]:
            if not worker.pending:
                self._kill(worker)

    # -- the load --------------------------------------------------------------------------

    def note(self, seconds: float) -> None:
        """Count ``seconds`` of scoring (wherever it ran) towards the load."""
        now = self._clock()
        self._busy = self._busy * math.exp((self._busy_at - now) / GAUGE_SECONDS) + seconds
        self._busy_at = now
        if self.saturated and self.load() >= self.start_load / 4:
            self._high_at = now

    def _sample_cpu(self) -> None:
        """Whether this process is saturated, from its CPU time over the last window."""
        now = self._clock()
        if now - self._cpu_at < CPU_WINDOW:
            return
        used = self._cpu_clock()
        share = (used - self._cpu_used) / (now - self._cpu_at)
        self._cpu_at, self._cpu_used = now, used
        self.saturated = share >= (UNSATURATED if self.saturated else SATURATED)

    def load(self) -> float:
        """Scoring CPU per second of late, as a fraction of a core."""
        decay = math.exp((self._busy_at - self._clock()) / GAUGE_SECONDS)
        return self._busy * decay / GAUGE_SECONDS

    @property
    def running(self) -> int:
        return len(self._workers)

    # -- scoring ---------------------------------------------------------------------------

    def take(self, classifier: SpamClassifier, size: int) -> Worker | None:
        """A worker ready for ``classifier``'s messages with room for a message of ``size``
        bytes, or None when the caller should score it itself (too small to be worth the trip;
        no worker running, ready or with room)."""
        if self._closed or self.size <= 0 or size < self.min_size:
            return None
        self._sample_cpu()
        if not self.saturated:
            return None
        self._grow()
        return self._pick(classifier, (classifier.serial, classifier.version))

    async def score(self, worker: Worker, data: bytes, auth: Mapping[str, str]) -> ContentVerdict:
        """The verdict of ``worker`` (from :meth:`take`); raises :class:`ScoringWorkerError`."""
        if worker.dead:
            raise ScoringWorkerError("the scoring worker stopped")
        header = json.dumps({"op": "score", "auth": dict(auth)}, separators=(",", ":")).encode()
        future = self._send(worker, header, data, None)
        try:
            answer = await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            self._fail(worker, f"no answer within {self.timeout:g}s")
            raise ScoringWorkerError(f"the scoring worker took longer than {self.timeout:g}s") from None
        if "error" in answer:
            raise ScoringWorkerError(f"the scoring worker: {str(answer['error'])[:300]}")
        try:
            verdict = verdict_from_json(answer.get("verdict"))
            cpu = float(answer.get("cpu", 0.0))
        except (TypeError, ValueError) as exc:
            self._fail(worker, f"an answer that is not a verdict ({exc})")
            raise ScoringWorkerError("the scoring worker's answer was not a verdict") from None
        self.note(max(cpu, 0.0))
        self.scored += 1
        return verdict

    def _pick(self, classifier: SpamClassifier, key: Key) -> Worker | None:
        best: Worker | None = None
        for worker in self._workers:
            if worker.loaded != key:
                if worker.loading != key:
                    self._load(worker, classifier, key)
                continue
            if len(worker.pending) < DEPTH and (best is None or len(worker.pending) < len(best.pending)):
                best = worker
        return best

    def _load(self, worker: Worker, classifier: SpamClassifier, key: Key) -> None:
        """Send the classifier to ``worker``; it takes messages once it answers."""
        blob = classifier.blob or self._blobs.get(key)
        if blob is None:
            # A classifier built from a model object, or taught in memory: its file bytes are
            # made once, off the loop, and the worker is sent them on a later message.
            worker.loading = key
            task = asyncio.get_running_loop().create_task(self._serialise(worker, classifier, key))
            task.add_done_callback(_log_failure)
            return
        header = json.dumps({
            "op": "model", "version": classifier.version, "good": list(classifier.words.good),
            "bad": list(classifier.words.bad), "own": list(classifier.own_domains),
        }).encode()  # fmt: skip
        worker.loading = key
        self._send(worker, header, blob, key)

    async def _serialise(self, worker: Worker, classifier: SpamClassifier, key: Key) -> None:
        blob = await asyncio.to_thread(classifier.model.to_bytes)
        self._blobs = {key: blob}
        if not worker.dead and worker.loading == key:
            worker.loading = None
            self._load(worker, classifier, key)

    def _send(
        self, worker: Worker, header: bytes, data: bytes, key: Key | None
    ) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        worker.pending.append((future, key))
        worker.writer.writelines((FRAME.pack(len(header), len(data)) + header, data))
        return future

    # -- starting and stopping -------------------------------------------------------------

    def _grow(self) -> None:
        if self._starting or len(self._workers) >= self.size:
            return
        now = self._clock()
        if now < self._retry_at or self.load() < self.start_load:
            return
        self._starting += 1
        task = asyncio.get_running_loop().create_task(self._start_one())
        task.add_done_callback(_log_failure)

    async def _start_one(self) -> None:
        try:
            process, sock = await asyncio.to_thread(spawn, "edgeward.content.worker", self.memory_limit)
            self._processes.append(process)
            try:
                reader, writer = await asyncio.open_connection(sock=sock)
            except OSError:
                sock.close()
                process.kill()
                raise
        except OSError as exc:
            self._retry_at = self._clock() + RESPAWN_PAUSE
            log.error("content scoring: cannot start a worker process (%s); scoring here", exc)
            return
        finally:
            self._starting -= 1
        worker = Worker(process, writer)
        if self._closed:
            self._kill(worker)
            return
        self._workers.append(worker)
        self.started += 1
        worker.reader_task = asyncio.get_running_loop().create_task(self._read(worker, reader))
        log.info("content scoring: worker %d started (load %.2f of a core)", process.pid, self.load())
        self._schedule_idle_check()

    async def _read(self, worker: Worker, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (size,) = ANSWER.unpack(await reader.readexactly(ANSWER.size))
                if size > MAX_ANSWER:
                    raise ValueError(f"an answer of {size} bytes")
                answer = json.loads(await reader.readexactly(size))
                if not isinstance(answer, dict) or not worker.pending:
                    raise ValueError("an answer nobody asked for")
                future, key = worker.pending.popleft()
                if key is not None:
                    if "loaded" not in answer:
                        raise ValueError(f"the model did not load: {str(answer.get('error'))[:300]}")
                    worker.loaded = key
                    if worker.loading == key:
                        worker.loading = None
                elif not future.done():
                    future.set_result(answer)
        except asyncio.CancelledError:
            raise
        except (asyncio.IncompleteReadError, OSError) as exc:
            self._fail(worker, "it ended" if isinstance(exc, asyncio.IncompleteReadError) else str(exc))
        except ValueError as exc:
            self._fail(worker, str(exc))

    def _fail(self, worker: Worker, reason: str) -> None:
        if worker.dead:
            return
        if not self._closed:
            self.failed += 1
            self._retry_at = self._clock() + RESPAWN_PAUSE
            log.error("content scoring: worker %d failed: %s; %d message(s) it held get 451",
                      worker.process.pid, reason, sum(1 for _, k in worker.pending if k is None))  # fmt: skip
        self._kill(worker)

    def _kill(self, worker: Worker) -> None:
        worker.dead = True
        if worker in self._workers:
            self._workers.remove(worker)
        error = ScoringWorkerError("the scoring worker stopped")
        while worker.pending:
            future, key = worker.pending.popleft()
            if future.done():
                continue
            if key is None:
                future.set_exception(error)  # a message's: its caller is waiting for it
            else:
                future.cancel()  # a model load's, which nobody awaits
        with contextlib.suppress(Exception):
            worker.writer.close()
        with contextlib.suppress(Exception):
            worker.process.kill()
        if worker.reader_task is not None and worker.reader_task is not asyncio.current_task():
            worker.reader_task.cancel()
        # Reaped off the loop: a killed process is gone at once, but wait() is still a syscall.
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().run_in_executor(None, _reap, worker.process)
        with contextlib.suppress(ValueError):
            self._processes.remove(worker.process)

    def _schedule_idle_check(self) -> None:
        if self._idle_timer is None and self._workers:
            loop = asyncio.get_running_loop()
            self._idle_timer = loop.call_later(max(self.idle_stop / 4, 0.05), self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        self._sample_cpu()
        self.note(0.0)
        if self._workers and self._clock() - self._high_at >= self.idle_stop:
            log.info(
                "content scoring: load %.3f of a core; %d worker(s) stopped", self.load(), len(self._workers)
            )
            for worker in list(self._workers):
                if not worker.pending:
                    self._kill(worker)
        self._schedule_idle_check()

    async def close(self) -> None:
        """Stop every worker (at shutdown); messages they held get :class:`ScoringWorkerError`."""
        self._closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        for worker in list(self._workers):
            self._kill(worker)
        await asyncio.to_thread(self._finalizer)


def _reap(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(Exception):
        process.wait(5)


def _kill_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        with contextlib.suppress(Exception):
            process.kill()
            process.wait(5)
    processes.clear()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("content scoring: %s", task.exception())
