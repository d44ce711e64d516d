"""Connection slots and held message bytes counted across receiving processes, in shared memory.

Several receiving processes accept on the same bindings (``supervisor``); the limits of
``server/stress.py`` (per connector, per client address, per client network) and its stress
threshold are the gateway's, not each process's. So every process adds the slots it holds into
its own column of one table that all of them map (a ``memfd`` the supervisor creates and passes
on), and reads the totals as sums over the columns:

- a check and the add that follows it run under an ``flock`` on the table, so two processes
  cannot both take the last slot; each process opens the table afresh (its own open file
  description), as an ``flock`` shared through one inherited description would exclude nothing;
- a receiving process that dies, even by kill -9, loses its lock with its file descriptors (the
  kernel drops it), and the supervisor clears its column before starting the replacement, so the
  slots it held are given back whatever state it died in.

Keys (a connector, a connector's client address, a connector's client network) are exact: a
64-bit hash of each is kept in an open-addressing table with its counts, one column per process.
A key whose counts fall to zero keeps its place until the table is more than ``FILL`` full, when
the process that finds it so rebuilds it from the keys still held (under the lock, as every read
and write is). The table is sized for three keys per connection the connectors allow, twice over,
so it cannot fill with held keys; if it ever did, a new key would be refused, never let through.

The byte budget (``server/budget.py``) is counted the same way, one 64-bit cell per process
after the table, so ``max_bytes_in_flight`` bounds the messages of all processes together.

Eviction stays within a process: a full connector evicts an idle session of the process the
newcomer reached, and refuses when that process has none to give.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
from collections.abc import Iterator

__all__ = ["FILL", "SharedSlots", "TableFull", "capacity_for"]

FILL = 0.7
_FP = 8  # a key's 64-bit hash (0: an empty entry)
_CELL = 4  # a signed 32-bit count of one process
_BYTES_CELL = 8  # a process's held message bytes, signed 64-bit


class TableFull(Exception):
    """No room for another key (the table is sized so that this does not happen)."""


def capacity_for(connections: int) -> int:
    """Entries for ``connections`` connections: three keys each, twice over, a power of two."""
    need = max(1024, 6 * connections)
    return 1 << (need - 1).bit_length()


def table_size(receivers: int, capacity: int) -> int:
    return capacity * (_FP + receivers * _CELL) + (receivers + 1) * _BYTES_CELL


def _fingerprint(key: str) -> int:
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


class SharedSlots:
    """One process's view of the table: ``index`` is its column among ``receivers``."""

    def __init__(self, fd: int, receivers: int, index: int) -> None:
        if not 0 <= index < receivers:
            raise ValueError(f"receiver {index} of {receivers}")
        self.receivers = receivers
        self.index = index
        # A description of our own, for an flock that excludes the other processes.
        self._fd = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
        size = os.fstat(self._fd).st_size
        self.capacity = (size - (receivers + 1) * _BYTES_CELL) // (_FP + receivers * _CELL)
        self._map = mmap.mmap(self._fd, size)
        view = memoryview(self._map)
        fps_end = self.capacity * _FP
        counts_end = fps_end + self.capacity * receivers * _CELL
        self._fps = view[:fps_end].cast("Q")
        self._counts = view[fps_end:counts_end].cast("i")  # [process][entry]
        self._bytes = view[counts_end:].cast("q")  # one per process, then the entries in use
        self._locked = 0

    @classmethod
    def create(cls, receivers: int, connections: int) -> tuple[SharedSlots, int]:
        """A new empty table for ``connections``, the first process's view, the fd to pass on."""
        fd = os.memfd_create("edgeward-slots")  # close-on-exec; pass_fds hands it on
        os.ftruncate(fd, table_size(receivers, capacity_for(connections)))
        return cls(fd, receivers, 0), fd

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the table for a check and its add (reentrant within this process)."""
        if self._locked == 0:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._locked += 1
        try:
            yield
        finally:
            self._locked -= 1
            if self._locked == 0:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _find(self, fp: int) -> tuple[int, bool]:
        """The entry of ``fp``, or the empty one where it would go (and False)."""
        fps, capacity = self._fps, self.capacity
        at = fp % capacity
        for _ in range(capacity):
            here = fps[at]
            if here == fp:
                return at, True
            if here == 0:
                return at, False
            at = (at + 1) % capacity
        raise TableFull("connection slot table full")

    def _total(self, entry: int) -> int:
        counts, capacity = self._counts, self.capacity
        return sum(counts[column * capacity + entry] for column in range(self.receivers))

    def count(self, key: str) -> int:
        """Slots ``key`` holds over every process."""
        with self.locked():
            entry, found = self._find(_fingerprint(key))
            return self._total(entry) if found else 0

    def add(self, key: str, delta: int) -> None:
        """Add ``delta`` to this process's slots of ``key``."""
        with self.locked():
            fp = _fingerprint(key)
            entry, found = self._find(fp)
            if not found:
                if delta <= 0:
                    return
                if self._bytes[self.receivers] >= FILL * self.capacity:
                    self._rebuild()
                    entry, _ = self._find(fp)
                self._fps[entry] = fp
                self._bytes[self.receivers] += 1
            self._counts[self.index * self.capacity + entry] += delta

    def _rebuild(self) -> None:
        """Put back only the keys still held, dropping the ones whose counts are all zero."""
        capacity, receivers = self.capacity, self.receivers
        live = [
            (self._fps[e], [self._counts[c * capacity + e] for c in range(receivers)])
            for e in range(capacity)
            if self._fps[e] != 0 and self._total(e) != 0
        ]
        self._map[: capacity * (_FP + receivers * _CELL)] = bytes(capacity * (_FP + receivers * _CELL))
        self._bytes[receivers] = len(live)
        for fp, counts in live:
            entry, _ = self._find(fp)
            self._fps[entry] = fp
            for column, value in enumerate(counts):
                self._counts[column * capacity + entry] = value

    def held_bytes(self) -> int:
        """Message bytes held by every process."""
        return sum(self._bytes[: self.receivers])

    def add_bytes(self, delta: int) -> None:
        self._bytes[self.index] += delta

    def clear(self, index: int) -> None:
        """Give back every slot and byte of process ``index`` (it died; the supervisor calls this)."""
        with self.locked():
            start = index * self.capacity
            self._counts[start : start + self.capacity] = memoryview(bytes(self.capacity * _CELL)).cast("i")
            self._bytes[index] = 0

    def close(self) -> None:
        for view in (self._fps, self._counts, self._bytes):
            view.release()
        self._map.close()
        os.close(self._fd)
