"""A JSON-lines log file rotated by size, with rotated files expired by age; and its reader.

``<dir>/<name>.log`` is the current file. When a line would take it past ``max_file_size`` it is
renamed to ``<name>-<UTC time>.log`` (the time of rotation, so names sort chronologically and
a file never holds entries newer than its name), and rotated files older than ``max_age`` are
deleted (Exchange's MaxFileSize / MaxAge; defaults 10 MB / 30 days).

Writes are line-buffered and never fsync'd: each line reaches the kernel in one ``write()``, so
a crash of the process loses nothing, and only a power cut can lose the last moments. The logs
explain what happened; the spool, which is fsync'd, is what makes mail safe. An fsync per line
would put a disk flush on the path of every accepted message for no gain in mail safety.

A lock makes a log safe across threads. Several processes may append to one file (the
receiving processes share the tracking and agent logs): every line is one ``O_APPEND`` write, a
rotation happens under an ``flock`` on the folder, and a writer looks at most once every
``SHARED_CHECK`` seconds (two ``stat`` calls per line were a few per cent of a busy receiving
process) whether its file was rotated away by another process (its inode is no longer the
path's), then opens the new one, and takes the file's real size for its own rotation. Lines a
process writes in that second after another's rotation so end the rotated file.

Security: files are created 0600 in a 0700 folder (they hold addresses and IPs). Entries are
JSON-encoded, so a client cannot forge a line break or terminal escape in the log. JSON itself
escapes only C0 controls; :func:`encode_entry` also escapes DEL, the C1 controls (U+0080-U+009F,
which some terminals read as CSI and OSC introducers), U+2028/U+2029 (line breaks to many
viewers), the bidirectional overrides (CVE-2021-42574, "Trojan Source") and lone surrogates
(which UTF-8 cannot encode), as JSON ``\\u`` escapes: a reader decodes the same string, a terminal shows
nothing active.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from edgeward.config.schema import LoggingConfig
from edgeward.ports import Clock, SystemClock

__all__ = ["RotatingJsonLog", "encode_entry", "iso_time", "log_files", "read_entries", "utc_timestamp"]

# Characters JSON leaves raw that a terminal or viewer acts on (module docstring).
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
SHARED_CHECK = 1.0  # seconds between looks at whether another process rotated the file
_ROTATED = re.compile(r"^(?P<name>.+)-(?P<stamp>\d{8}T\d{6}\d{6}Z)(?:-(?P<n>\d+))?\.log$")


def encode_entry(entry: Mapping[str, Any]) -> str:
    """One log line: ``entry`` as compact JSON with every control character escaped, and a newline."""
    text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)
    # Outside strings JSON text is ASCII, so each match is inside a string and may be escaped there.
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


def iso_time(when: float) -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2024-05-01T12:00:00.123Z`` (sorts as text).

    Every log line has one, several per message; the date and time of day are made once per
    second. The fraction is rounded to microseconds as ``datetime.fromtimestamp`` rounds it
    (half to even), then cut to milliseconds as ``isoformat`` cuts it, so the text is the same.
    """
    frac, whole = math.modf(when)
    micros = round(frac * 1e6)
    if micros < 0:
        micros += 1_000_000
        whole -= 1
    elif micros >= 1_000_000:
        micros -= 1_000_000
        whole += 1
    return f"{_second(int(whole))}.{micros // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def utc_timestamp(when: datetime) -> float:
    """Seconds since the epoch of ``when``; a naive datetime is taken as UTC, not local time."""
    return (when.replace(tzinfo=UTC) if when.tzinfo is None else when).timestamp()


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _stamp_time(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC).timestamp()


class RotatingJsonLog:
    """Appends one JSON object per line to ``<dir>/<name>.log``."""

    def __init__(
        self,
        directory: Path,
        name: str,
        *,
        max_file_size: int,
        max_age: float,
        clock: Clock | None = None,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"log name must be a plain file name: {name!r}")
        self.directory = Path(directory)
        self.name = name
        self.path = self.directory / f"{name}.log"
        self._max_size = max_file_size
        self._max_age = max_age
        self._clock = clock if clock is not None else SystemClock()
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._size = 0
        self._inode = 0
        self._checked = 0.0  # monotonic time of the last look at the shared file

    def _open(self) -> TextIO:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        # buffering=1: line-buffered, one write() per entry.
        fh = open(fd, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - kept open across calls
        st = os.fstat(fd)
        self._size, self._inode = st.st_size, st.st_ino
        return fh

    def _moved(self) -> bool:
        """Whether another process rotated our file away from the path."""
        try:
            return os.stat(self.path).st_ino != self._inode
        except FileNotFoundError:
            return True

    @contextlib.contextmanager
    def _folder_locked(self) -> Iterator[None]:
        fd = os.open(self.directory, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # drops the lock

    def write(self, entry: Mapping[str, Any]) -> None:
        line = encode_entry(entry)
        size = len(line.encode("utf-8")) if not line.isascii() else len(line)
        with self._lock:
            if self._file is None:
                self._file = self._open()
            moved = False
            now = time.monotonic()
            if now - self._checked >= SHARED_CHECK:
                self._checked = now
                moved = self._moved()
                if not moved:  # the file's own size: other processes append to it too
                    self._size = os.fstat(self._file.fileno()).st_size
            if moved or (self._size and self._size + size > self._max_size):
                with self._folder_locked():
                    if moved or self._moved():  # another process rotated it: follow
                        self._file.close()
                        self._file = self._open()
                    if self._size and self._size + size > self._max_size:
                        self._rotate()
            assert self._file is not None  # _rotate reopens it
            self._file.write(line)
            self._size += size

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
        now = self._clock.now()
        target = self.directory / f"{self.name}-{_stamp(now)}.log"
        n = 0
        while target.exists():
            n += 1
            target = self.directory / f"{self.name}-{_stamp(now)}-{n}.log"
        os.rename(self.path, target)
        self._file = self._open()
        self.prune()

    def prune(self) -> int:
        """Delete rotated files whose rotation time is older than ``max_age``; returns how many."""
        cutoff = self._clock.now() - self._max_age
        removed = 0
        for path, rotated_at in log_files(self.directory, self.name):
            if rotated_at is not None and rotated_at < cutoff:
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                removed += 1
        return removed

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def log_files(directory: Path, name: str) -> list[tuple[Path, float | None]]:
    """The files of log ``name``, oldest first: (path, rotation time); the current file last."""
    rotated: list[tuple[float, int, Path]] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        m = _ROTATED.match(entry.name)
        if m and m.group("name") == name:
            rotated.append((_stamp_time(m.group("stamp")), int(m.group("n") or 0), Path(entry.path)))
    rotated.sort()
    out: list[tuple[Path, float | None]] = [(p, t) for t, _, p in rotated]
    current = Path(directory) / f"{name}.log"
    if current.exists():
        out.append((current, None))
    return out


def read_entries(directory: Path, name: str, *, since: float | None = None) -> Iterator[dict[str, Any]]:
    """Every entry of log ``name`` in order; files rotated before ``since`` are skipped unread.

    A line that is not a JSON object (the torn last line after a power cut) is skipped.
    """
    for path, rotated_at in log_files(directory, name):
        if since is not None and rotated_at is not None and rotated_at < since:
            continue
        try:
            fh = path.open("r", encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue  # pruned or rotated away while we read
        with fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(entry, dict):
                    yield entry


class LogWriter:
    """Base of the named logs: one rotating JSON-lines file per writer, timestamps by ``clock``."""

    def __init__(self, directory: Path, cfg: LoggingConfig, *, clock: Clock | None = None, name: str) -> None:
        self._clock = clock if clock is not None else SystemClock()
        self._log = RotatingJsonLog(
            directory, name, max_file_size=cfg.max_file_size, max_age=cfg.max_age, clock=self._clock
        )

    def close(self) -> None:
        self._log.close()
