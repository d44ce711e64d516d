"""The Office and RTF engine: oletools analysis in a small pool of worker processes.

Why processes: oletools is pure Python, and a hostile document (a crafted OLE sector chain,
a deep RTF, a huge VBA project) can keep it busy for minutes. A thread running it cannot be
stopped, so a time limit in a thread would only stop waiting while the CPU stays taken and
the next message queues behind it. A worker process can be killed. Each worker runs
:func:`edgeward.scanning.office_analysis.analyze` on one item at a time; a worker that passes
the message's time limit is killed (SIGKILL) and replaced, and the scan raises
:class:`ScanEngineError` (the multi-engine policy then defers the message: a document that
cannot be analysed is never let through as clean).

Cost, measured by ``bench/office_bench.py`` on the 2-core build machine: see
``docs/architecture.md`` (the hop to a worker against the analysis in the calling thread);
a worker is a fresh interpreter started on first use and after a kill.

Only items whose content is an Office container, RTF, Office XML, SYLK, MHTML or CSV go to
a worker (:func:`office_analysis.sniff`, on the first bytes); everything else costs nothing.

Workers are bounded: an address-space limit (``memory_limit``, ``RLIMIT_AS``) so a
decompression bomb inside a document ends in ``MemoryError`` in the worker (an unanswered
item), not in the host's OOM killer choosing the gateway.

Security: items go to workers through a pipe, never through a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
import weakref
import zipfile
from collections.abc import Sequence
from importlib.metadata import version as _dist_version
from multiprocessing.connection import Connection
from typing import Any

from edgeward.ports import EngineStatus, ScanEngineError, ScanHit, ScanItem
from edgeward.scanning import in_memory
from edgeward.scanning.odf import is_odf_package
from edgeward.scanning.office_analysis import sniff
from edgeward.scanning.ooxml import is_office_package
from edgeward.worker_process import spawn

__all__ = ["OfficeEngine"]

log = logging.getLogger("edgeward.scanning.office")


class _Worker:
    """One worker: ``python -m edgeward.scanning.office_worker`` on one end of a socket pair.

    A fresh interpreter rather than ``multiprocessing``: a forked or spawned child would import
    the parent's main module again (whatever started the gateway), and a forked one would
    inherit the event loop's threads and sockets. Requests and answers are length-prefixed
    frames (``Connection.send_bytes``); answers are JSON, never pickle, because the worker has
    parsed hostile input and the gateway must not run what it says.
    """

    def __init__(self, memory_limit: int) -> None:
        self.process, ours = spawn("edgeward.scanning.office_worker", memory_limit)
        self.conn = Connection(ours.detach())

    def call(self, request: dict[str, str], data: bytes, timeout: float) -> dict[str, Any] | None:
        """The worker's answer, or None when it did not answer within ``timeout``."""
        self.conn.send_bytes(json.dumps(request).encode())
        self.conn.send_bytes(data)
        if not self.conn.poll(max(timeout, 0.0)):
            return None
        answer: dict[str, Any] = json.loads(self.conn.recv_bytes(16 * 1024 * 1024))
        return answer

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
            self.process.wait(5)
        with contextlib.suppress(Exception):
            self.conn.close()


class OfficeEngine:
    """A :class:`~edgeward.ports.Scanner` over oletools. See the module docstring."""

    name = "office"

    def __init__(self, *, timeout: float = 10.0, workers: int = 2, memory_limit: int = 1024**3) -> None:
        if workers < 1:
            raise ValueError("the Office engine needs at least one worker")
        self.timeout = timeout
        self.memory_limit = memory_limit
        self._idle: asyncio.Queue[_Worker | None] = asyncio.Queue()
        for _ in range(workers):
            self._idle.put_nowait(None)  # a slot; its worker starts on first use
        self._workers = workers
        # Workers of an engine nobody closed (a CLI command's) are killed when it is collected or
        # the interpreter exits, so no worker outlives the process that started it.
        self._started: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _kill_all, self._started)
        self.killed = 0
        self._last_error = ""
        self._closed = False

    async def _run(self, item: ScanItem, deadline: float) -> list[tuple[str, str]]:
        path = item.path
        request = {"name": item.name, "declared_type": item.declared_type, "true_type": item.true_type}
        slot = await self._idle.get()
        worker: _Worker | None = slot
        try:
            if worker is None or not worker.alive():
                if worker is not None:
                    worker.kill()
                worker = await asyncio.to_thread(_Worker, self.memory_limit)
                self._started[:] = [w for w in self._started if w.alive()] + [worker]
            # Real time, not the injected clock: this bounds a process that burns real CPU.
            remaining = deadline - time.monotonic()
            try:
                answer = await asyncio.to_thread(worker.call, request, item.data, remaining)
            except asyncio.CancelledError:
                # The thread still waits on this worker: it cannot serve anyone else.
                worker.kill()
                worker = None
                raise
            except (EOFError, OSError, ValueError) as exc:
                worker.kill()
                worker = None
                raise ScanEngineError(f"office: the analysis of {path} died ({exc or 'no answer'})") from None
            if answer is None:
                worker.kill()
                worker = None
                self.killed += 1
                raise ScanEngineError(f"office: analysis of {path} passed {self.timeout:g}s; stopped")
            if "error" in answer:
                raise ScanEngineError(f"office: {path}: {str(answer['error'])[:300]}")
            return [(str(finding), str(signature)) for finding, signature in answer.get("findings", [])]
        finally:
            self._idle.put_nowait(worker)

    async def scan(self, items: Sequence[ScanItem]) -> list[ScanHit]:
        if self._closed:
            raise ScanEngineError("office: the engine is closed")
        # The time limit covers the message, as [antivirus.office] timeout says.
        deadline = time.monotonic() + self.timeout
        hits: list[ScanHit] = []
        items = in_memory(items)
        packages = _office_packages(items)
        for item in items:
            kind = sniff(item.data, item.declared_type, item.true_type, item.name)
            if kind is None or (kind == "zip" and item.path not in packages):
                # A zip that is no document package gets nothing from the analysis (it is the
                # walk's to unpack); sending it would cost a worker a round trip of its size.
                continue
            if "!" in item.path and item.path.rsplit("!", 1)[0] in packages:
                continue  # a part of a document analysed whole (the walk unpacks OOXML as a zip)
            try:
                found = await self._run(item, deadline)
            except ScanEngineError as exc:
                self._last_error = str(exc)
                raise
            hits.extend(ScanHit(finding, self.name, signature, item.path) for finding, signature in found)
        return hits

    async def status(self) -> EngineStatus:
        detail = f"{self._workers} worker process(es); {self.killed} stopped at the time limit"
        if self._last_error:
            detail += f"; last failure: {self._last_error}"
        version = f"oletools {_dist_version('oletools')}"
        return EngineStatus(self.name, not self._closed, version=version, detail=detail)

    async def close(self) -> None:
        """Stop the workers (at shutdown)."""
        self._closed = True
        await asyncio.to_thread(self._finalizer)


def _office_packages(items: Sequence[ScanItem]) -> set[str]:
    """Paths of the items that are OOXML or OpenDocument packages: their parts are analysed with them.

    The walk unpacks a .docm like any zip, so its ``vbaProject.bin`` and embedded objects come
    again as items of their own; analysing them too would report every macro twice and cost a
    worker round trip each. Members of a plain zip are still analysed one by one.
    """
    found: set[str] = set()
    for item in items:
        if item.data[:4] != b"PK\x03\x04":
            continue
        try:
            with zipfile.ZipFile(io.BytesIO(item.data)) as zf:
                if is_office_package(zf) or is_odf_package(zf):
                    found.add(item.path)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            continue
    return found


def _kill_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.kill()
    workers.clear()
