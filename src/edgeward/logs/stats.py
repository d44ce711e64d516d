"""Figures for the dashboard and ``/metrics``, folded incrementally from the tracking logs.

:class:`TrackingStats` remembers, per file (the gateway's, the delivery process's and the
administrators' tracking logs, current and rotated), how far it has read, keyed by device and
inode, so a refresh costs only the bytes written since the last one. A rotation is a rename:
same inode, so the rest of the file is read under its new name, and the new current file, a
new inode, from its start (a file renamed between the listing and its opening is found under
its new name at the next refresh). A file shorter than what was read, or whose first bytes
changed (an inode reused after pruning), is read again from its start. Only whole lines are
taken; a torn last line waits for its newline. A line that is not a JSON object with an event
and a time is counted as damaged and skipped.

Memory is bounded whatever the traffic:

- 1-minute buckets for a week at most (older ones are dropped), each holding the six series
  (received, delivered, rejected, quarantined, deferred, bounced): at most 10,080 small lists;
- the breakdowns (rejections by agent and by finding, sending IPs, sender domains, SCL, AV
  detections) are kept per minute for the last two hours and per hour for the week, each
  counter capped at :data:`CAP` distinct keys (the rest count under ``(other)``), and keys cut
  to 200 characters. The hour window reads minute breakdowns; the day and week windows read
  hour buckets, so their oldest edge may take in up to an hour more than the window.

The series are per event line: RECEIVE is received, SEND and DELIVER delivered, REJECT
rejected, QUARANTINE quarantined, DEFER deferred, FAIL bounced (a delivery process line covers
the recipients that got one reply). Sending IPs and sender domains come from the inbound
events (RECEIVE, QUARANTINE, REJECT, DISCARD), not from delivery, which repeats them. The SCL
is an ``scl`` field when a line has one, else the content filter's ``SCL_<n>`` finding. AV
detections are findings named ``AV_*`` whose detail names a ``signature=``.

Queue depth and certificate expiry, states rather than events, are joined to these figures by
the console (``web.figures``). Nothing here speaks HTTP.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeward.logs.rotating import log_files
from edgeward.logs.tracking import ADMIN_LOG_NAME, DELIVERY_LOG_NAME, LOG_NAME, TrackingEvent

__all__ = ["CAP", "SERIES", "WINDOWS", "Snapshot", "TrackingStats"]

WINDOWS = {"hour": 3600, "day": 86400, "week": 7 * 86400}
POINTS = 60  # buckets per chart, whatever the window
SERIES = ("received", "delivered", "rejected", "quarantined", "deferred", "bounced")
CAP = 256  # distinct keys per breakdown per bucket
TOP = 10
OTHER = "(other)"
_KEEP = WINDOWS["week"]
_DETAIL_KEEP = 2 * 3600  # minute buckets keep their breakdowns this long
_FUTURE = 3600  # a line stamped further ahead than this is not bucketed (a clock gone wrong)
_HEAD = 64  # bytes that identify a file beyond its inode
_MISSES = 3
_CHUNK = 1 << 20
_KEY_MAX = 200
_SERIES_OF = {"RECEIVE": 0, "SEND": 1, "DELIVER": 1, "REJECT": 2, "QUARANTINE": 3, "DEFER": 4, "FAIL": 5}
_INBOUND = frozenset({"RECEIVE", "QUARANTINE", "REJECT", "DISCARD"})
_SCORED = frozenset({"RECEIVE", "QUARANTINE", "REJECT"})
_DIMENSIONS = ("reject_agent", "reject_finding", "ip", "domain", "scl", "av")
_SIGNATURE = re.compile(r"signature=(.*?)(?: path=|$)")
_AV_SEP = "\x00"  # joins finding and signature in one key; the AV agent writes neither with one
_EVENTS = frozenset(e.value for e in TrackingEvent)
log = logging.getLogger(__name__)

Breakdown = dict[str, Counter[str]]


def _breakdown() -> Breakdown:
    return {d: Counter() for d in _DIMENSIONS}


def _add(counter: Counter[str], key: str) -> None:
    key = key[:_KEY_MAX]
    counter[key if key in counter or len(counter) < CAP else OTHER] += 1


@dataclass(slots=True)
class _Minute:
    counts: list[int] = field(default_factory=lambda: [0] * len(SERIES))
    detail: Breakdown | None = None


@dataclass(slots=True)
class _File:
    offset: int
    head: bytes
    missed: int = 0  # refreshes in a row that did not list it


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The tracking figures of one window: ``series[name][i]`` counts bucket ``times[i]``."""

    window: str
    start: float
    end: float
    bucket_seconds: int
    times: list[float]
    series: dict[str, list[int]]
    totals: dict[str, int]
    rejected_by_agent: list[tuple[str, int]]
    rejected_by_finding: list[tuple[str, int]]
    top_ips: list[tuple[str, int]]
    top_domains: list[tuple[str, int]]
    scl: list[int]  # scl[n]: messages at SCL n, 0-9
    av: list[tuple[str, str, int]]  # (finding, signature, count)
    damaged_lines: int


class TrackingStats:
    """The incremental reader; thread-safe (the console's handlers run in a thread pool)."""

    def __init__(
        self,
        directory: Path,
        names: Iterable[str] = (LOG_NAME, DELIVERY_LOG_NAME, ADMIN_LOG_NAME),
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.names = tuple(names)
        self._now = now
        self._lock = threading.Lock()
        self._files: dict[tuple[int, int], _File] = {}
        self._minutes: dict[int, _Minute] = {}
        self._hours: dict[int, Breakdown] = {}
        self._totals: Counter[str] = Counter()
        self._day_of: dict[str, int] = {}  # "YYYY-MM-DD" -> epoch seconds of its midnight
        self._pruned_at = 0
        self.damaged = 0
        self.bytes_read = 0

    # -- reading ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Fold in whatever was written since the last call."""
        with self._lock:
            now = self._now()
            seen: dict[tuple[int, int], _File] = {}
            for name in self.names:
                for path, _rotated in log_files(self.directory, name):
                    self._read(path, now, seen)
            # A file renamed by a rotation between the listing and its opening is missed once
            # and found under its new name the next time: forget it only when gone for good.
            for key, state in self._files.items():
                if key not in seen and state.missed < _MISSES:
                    state.missed += 1
                    seen[key] = state
            self._files = seen
            self._prune(now)

    def refresh_in_background(self) -> threading.Thread:
        """Start the first refresh (a read of every retained line) in a thread of its own, so
        the first page after a start does not wait for all of it."""

        def run() -> None:
            try:
                self.refresh()
            except Exception:
                log.exception("tracking statistics: the first read failed; the next call tries again")

        thread = threading.Thread(target=run, name="tracking-stats", daemon=True)
        thread.start()
        return thread

    def _read(self, path: Path, now: float, seen: dict[tuple[int, int], _File]) -> None:
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            return  # rotated or pruned between the listing and here: found under its new name
        except OSError as exc:  # unreadable: the others still count, and the next call tries again
            log.warning("tracking statistics: cannot read %s: %s", path, exc)
            return
        with fh:
            st = os.fstat(fh.fileno())
            key = (st.st_dev, st.st_ino)
            if key in seen:
                return  # listed twice while being renamed
            head = fh.read(_HEAD)
            state = self._files.get(key)
            if state is None or st.st_size < state.offset or not head.startswith(state.head):
                state = _File(0, head)  # new, truncated or a reused inode: from the start
            elif len(state.head) < _HEAD:
                state.head = head
            state.missed = 0
            seen[key] = state
            fh.seek(state.offset)
            rest = b""
            while chunk := fh.read(_CHUNK):
                data = rest + chunk
                cut = data.rfind(b"\n") + 1
                for line in data[:cut].splitlines():
                    self._line(line, now)
                rest = data[cut:]
                state.offset += cut
                self.bytes_read += cut

    def _line(self, line: bytes, now: float) -> None:
        # The hot loop of a first read: plain type checks and dict lookups, no helpers per key.
        try:
            entry = json.loads(line)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
            if line.strip():
                self.damaged += 1
            return
        event = entry.get("event") if type(entry) is dict else None
        stamp = entry.get("time") if type(entry) is dict else None
        minute = self._minute(stamp) if type(stamp) is str else None
        if type(event) is not str or minute is None:
            self.damaged += 1
            return
        if event in _EVENTS:  # the writer knows no others; a key per stray name would grow unbounded
            self._totals[event] += 1
        if not now - _KEEP <= minute <= now + _FUTURE:
            return
        bucket = self._minutes.get(minute)
        if bucket is None:
            bucket = self._minutes[minute] = _Minute()
        series = _SERIES_OF.get(event)
        if series is not None:
            bucket.counts[series] += 1
        if event not in _INBOUND and "findings" not in entry:
            return
        keys = _keys(event, entry)
        if not keys:
            return
        hour = minute - minute % 3600
        hourly = self._hours.get(hour)
        if hourly is None:
            hourly = self._hours[hour] = _breakdown()
        detail = None
        if minute >= now - _DETAIL_KEEP:
            detail = bucket.detail
            if detail is None:
                detail = bucket.detail = _breakdown()
        for dimension, value in keys:
            _add(hourly[dimension], value)
            if detail is not None:
                _add(detail[dimension], value)

    def _minute(self, stamp: str) -> int | None:
        """The minute of an ISO stamp as the writer makes it (``2026-01-01T12:00:00.000Z``)."""
        day = self._day_of.get(stamp[:10])
        if day is None:
            if len(self._day_of) > 10_000:
                self._day_of.clear()
            try:
                day = int(datetime.strptime(stamp[:10], "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
            except ValueError:
                return None
            self._day_of[stamp[:10]] = day
        hh, mm = stamp[11:13], stamp[14:16]
        if (
            stamp[10:11] != "T"
            or stamp[13:14] != ":"
            or not (hh + mm).isascii()
            or not (hh + mm).isdigit()
            or hh > "23"
            or mm > "59"
        ):
            return None
        return day + int(hh) * 3600 + int(mm) * 60

    def _prune(self, now: float) -> None:
        minute = int(now) - int(now) % 60
        if minute == self._pruned_at:
            return
        self._pruned_at = minute
        cutoff, detail_cutoff = now - _KEEP - 60, now - _DETAIL_KEEP - 60
        for m in [m for m in self._minutes if m < cutoff]:
            del self._minutes[m]
        for m, bucket in self._minutes.items():
            if bucket.detail is not None and m < detail_cutoff:
                bucket.detail = None
        for h in [h for h in self._hours if h + 3600 < cutoff]:
            del self._hours[h]

    # -- answering -------------------------------------------------------------------------

    @property
    def buckets(self) -> tuple[int, int]:
        """How many minute and hour buckets are held (bounded by the week kept)."""
        with self._lock:
            return len(self._minutes), len(self._hours)

    def totals(self) -> dict[str, int]:
        """Events of each kind (:class:`TrackingEvent`) read since this reader was made (all
        files, any age)."""
        with self._lock:
            return dict(self._totals)

    def snapshot(self, window: str) -> Snapshot:
        """The figures of ``window`` (a key of :data:`WINDOWS`; ``ValueError`` otherwise)."""
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}; one of {', '.join(WINDOWS)}")
        span = WINDOWS[window]
        width = span // POINTS
        with self._lock:
            now = self._now()
            end = int(now) - int(now) % 60 + 60  # the end of the current minute
            start = end - span
            series = [[0] * POINTS for _ in SERIES]
            for minute, bucket in self._minutes.items():
                if start <= minute < end:
                    i = (minute - start) // width
                    for s, count in enumerate(bucket.counts):
                        series[s][i] += count
            merged = _breakdown()
            if span <= _DETAIL_KEEP:
                parts = (b.detail for m, b in self._minutes.items() if start <= m < end and b.detail)
            else:
                parts = (d for h, d in self._hours.items() if h + 3600 > start and h < end)
            for part in parts:
                for dimension, counter in part.items():
                    merged[dimension].update(counter)
            damaged = self.damaged
        scl = [merged["scl"].get(str(n), 0) for n in range(10)]
        av = []
        for key, n in merged["av"].most_common(TOP):
            finding, _, signature = key.partition(_AV_SEP)
            av.append((finding, signature, n))
        return Snapshot(
            window=window, start=float(start), end=float(end), bucket_seconds=width,
            times=[float(start + i * width) for i in range(POINTS)],
            series=dict(zip(SERIES, series, strict=True)),
            totals={name: sum(values) for name, values in zip(SERIES, series, strict=True)},
            rejected_by_agent=merged["reject_agent"].most_common(TOP),
            rejected_by_finding=merged["reject_finding"].most_common(TOP),
            top_ips=merged["ip"].most_common(TOP), top_domains=merged["domain"].most_common(TOP),
            scl=scl, av=av,
            damaged_lines=damaged,
        )  # fmt: skip


def _keys(event: str, entry: dict[str, Any]) -> list[tuple[str, str]]:
    """The breakdown keys one line adds to."""
    keys: list[tuple[str, str]] = []
    findings = entry.get("findings")
    findings = [f for f in findings if type(f) is dict] if type(findings) is list else []
    names = [n for n in (f.get("name") for f in findings) if type(n) is str]
    if event == "REJECT":
        decided_by = entry.get("decided_by")
        keys.append(("reject_agent", decided_by if type(decided_by) is str and decided_by else "(unknown)"))
        keys.extend(("reject_finding", name) for name in dict.fromkeys(names))
    if event in _INBOUND:
        ip = entry.get("client_ip")
        if type(ip) is str and ip:
            keys.append(("ip", ip))
        sender = entry.get("sender")
        if type(sender) is str and "@" in sender:
            keys.append(("domain", sender.rpartition("@")[2].lower()))
    if event in _SCORED:
        scl = _scl(entry.get("scl"), names)
        if scl is not None:
            keys.append(("scl", str(scl)))
    for f in findings:
        found, detail = f.get("name"), f.get("detail")
        if type(found) is str and found.startswith("AV_") and type(detail) is str:
            m = _SIGNATURE.search(detail)
            if m:
                keys.append(("av", f"{found}{_AV_SEP}{m.group(1)}"))
    return keys


def _scl(value: object, names: list[str]) -> int | None:
    if type(value) is int and 0 <= value <= 9:
        return value
    for name in names:
        if len(name) == 5 and name.startswith("SCL_") and name[4].isdigit():
            return int(name[4])
    return None
