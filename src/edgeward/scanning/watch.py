"""Noticing that an engine's files changed, cheaply enough to ask on every scan.

The YARA rules folder and the hash list are edited by an administrator or replaced by
``edgeward av update`` while the gateway runs. An engine asks :meth:`FileWatch.due` before each
scan; at most once per ``every`` seconds (on the monotonic clock, so a step of the system clock
neither floods nor starves the check) that lists the files and compares a fingerprint of
(path, size, mtime in nanoseconds). Size and mtime together catch an in-place edit within the
same second on file systems with coarse timestamps; a rename over the file changes its mtime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from edgeward.ports import Clock

__all__ = ["FileWatch", "Fingerprint", "fingerprint"]

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(paths: Sequence[Path]) -> Fingerprint:
    """(path, size, mtime_ns) of each file that exists; a missing file simply drops out."""
    marks: list[tuple[str, int, int]] = []
    for path in sorted(paths):
        try:
            st = path.stat()
        except OSError:
            continue
        marks.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(marks)


class FileWatch:
    """Remembers the fingerprint of a set of files and says when it has changed."""

    def __init__(self, files: Callable[[], Sequence[Path]], *, clock: Clock, every: float) -> None:
        self._files = files
        self._clock = clock
        self._every = every
        self._seen: Fingerprint | None = None
        self._checked_at: float | None = None

    @property
    def seen(self) -> Fingerprint | None:
        """The fingerprint last marked as loaded."""
        return self._seen

    def current(self) -> Fingerprint:
        return fingerprint(self._files())

    def mark(self, seen: Fingerprint) -> None:
        """Record ``seen`` as loaded (the fingerprint taken before reading the files, so an edit
        made while they were read is noticed at the next check)."""
        self._seen = seen
        self._checked_at = self._clock.monotonic()

    def due(self) -> Fingerprint | None:
        """The new fingerprint when the files changed since :meth:`mark`, else None; lists the
        files only when ``every`` seconds have passed since the last look."""
        now = self._clock.monotonic()
        if self._checked_at is not None and now - self._checked_at < self._every:
            return None
        self._checked_at = now
        seen = self.current()
        return None if seen == self._seen else seen
