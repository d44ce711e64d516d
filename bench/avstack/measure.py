"""What one pass of a stack costs: CPU of its process tree and the peak of its summed RSS.

A sampler thread adds up the resident set of every live process under the stack's root (for
Edgeward: the serve process, its delivery process and its oletools workers; for amavis: the
master and its children, and any decoder they run) ten times a second and keeps the peak. The
shared clamd is not part of either stack: its CPU is reported on its own, its memory not at all.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from relay.procs import process_tree

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> int:
    """Bytes resident in ``root`` and its live descendants (shared pages counted per process)."""
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    return total


class PeakRss:
    """Sample ``tree_rss(root)`` in a thread from ``start()`` to ``stop()``; ``peak`` in bytes."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root = root
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.root))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.root))
