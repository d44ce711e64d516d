"""The rotating JSON-lines writer: append, rotate by size, expire by age, read back in order."""

from __future__ import annotations

import json
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeward.logs import rotating
from edgeward.logs.rotating import RotatingJsonLog, iso_time, log_files, read_entries

DAY = 86400.0


class FixedClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def test_lines_are_json_objects_and_the_file_is_private(tmp_path: Path) -> None:
    log = RotatingJsonLog(tmp_path / "log", "t", max_file_size=10_000, max_age=DAY, clock=FixedClock())
    log.write({"a": 1, "text": "line\nbreak \x1b[31m"})
    log.write({"a": 2})
    log.close()
    lines = (tmp_path / "log" / "t.log").read_text().splitlines()
    assert [json.loads(x)["a"] for x in lines] == [1, 2]
    assert json.loads(lines[0])["text"] == "line\nbreak \x1b[31m"  # escaped, still one line
    assert stat.S_IMODE((tmp_path / "log" / "t.log").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "log").stat().st_mode) == 0o700


def test_lines_reach_the_file_without_close(tmp_path: Path) -> None:
    log = RotatingJsonLog(tmp_path, "t", max_file_size=10_000, max_age=DAY)
    log.write({"n": 1})
    assert json.loads((tmp_path / "t.log").read_text()) == {"n": 1}
    log.close()


def test_rotates_at_the_size_limit_and_reads_back_in_order(tmp_path: Path) -> None:
    clock = FixedClock()
    log = RotatingJsonLog(tmp_path, "t", max_file_size=200, max_age=DAY, clock=clock)
    for n in range(30):
        clock.t += 1
        log.write({"n": n, "pad": "x" * 20})
    log.close()
    files = log_files(tmp_path, "t")
    assert len(files) > 3
    assert files[-1] == (tmp_path / "t.log", None)
    for path, _ in files:
        assert path.stat().st_size <= 200
    assert [e["n"] for e in read_entries(tmp_path, "t")] == list(range(30))


def test_reopening_continues_the_current_file(tmp_path: Path) -> None:
    for n in range(2):
        log = RotatingJsonLog(tmp_path, "t", max_file_size=10_000, max_age=DAY)
        log.write({"n": n})
        log.close()
    assert [e["n"] for e in read_entries(tmp_path, "t")] == [0, 1]
    assert len(log_files(tmp_path, "t")) == 1


def test_rotated_files_older_than_max_age_are_deleted(tmp_path: Path) -> None:
    clock = FixedClock()
    log = RotatingJsonLog(tmp_path, "t", max_file_size=60, max_age=2 * DAY, clock=clock)
    for n in range(6):
        log.write({"n": n, "pad": "y" * 30})
        clock.t += DAY
    log.close()
    kept = [e["n"] for e in read_entries(tmp_path, "t")]
    # Each line fills a file; files rotated more than two days before the last write are gone.
    assert kept == [2, 3, 4, 5]
    # A day after the last write, prune() (also run at every rotation) drops one more file.
    assert log.prune() == 1
    assert [e["n"] for e in read_entries(tmp_path, "t")] == [3, 4, 5]
    assert log.prune() == 0


def test_other_logs_in_the_folder_are_left_alone(tmp_path: Path) -> None:
    clock = FixedClock()
    a = RotatingJsonLog(tmp_path, "protocol", max_file_size=40, max_age=1, clock=clock)
    b = RotatingJsonLog(tmp_path, "protocol-smtp", max_file_size=10_000, max_age=DAY, clock=clock)
    b.write({"keep": True})
    for n in range(4):
        a.write({"n": n, "pad": "z" * 30})
        clock.t += 10
    a.close()
    b.close()
    assert [e for e in read_entries(tmp_path, "protocol-smtp")] == [{"keep": True}]


def test_torn_lines_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "t.log").write_text('{"n": 1}\n[1, 2]\n{"n": 2')
    assert list(read_entries(tmp_path, "t")) == [{"n": 1}]


def test_concurrent_writers_do_not_interleave_lines(tmp_path: Path) -> None:
    log = RotatingJsonLog(tmp_path, "t", max_file_size=5_000, max_age=DAY)

    def writer(k: int) -> None:
        for n in range(200):
            log.write({"k": k, "n": n, "pad": "p" * 50})

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    entries = list(read_entries(tmp_path, "t"))
    assert len(entries) == 800
    for k in range(4):
        assert [e["n"] for e in entries if e["k"] == k] == list(range(200))


@given(
    st.floats(min_value=0, max_value=2**33, allow_nan=False)
    | st.integers(0, 2**33).map(lambda s: s + 0.9999995)
)
@settings(max_examples=3000)
def test_iso_time_reads_as_datetime_writes_it(when: float) -> None:
    expected = datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert iso_time(when) == expected


def test_iso_time_is_utc_with_milliseconds() -> None:
    assert iso_time(0.5) == "1970-01-01T00:00:00.500Z"


def test_log_names_cannot_escape_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        RotatingJsonLog(tmp_path, "../evil", max_file_size=1, max_age=1)


def test_two_processes_writing_one_log_lose_no_line_and_follow_each_others_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two writers of one file stand for two receiving processes (each has its own instance);
    # they look at the shared file before every line here, not once a second.
    monkeypatch.setattr(rotating, "SHARED_CHECK", 0.0)
    clock = FixedClock()
    a, b = (RotatingJsonLog(tmp_path, "t", max_file_size=400, max_age=DAY, clock=clock) for _ in range(2))
    for n in range(60):
        clock.t += 1.0
        (a if n % 3 else b).write({"n": n, "pad": "x" * 20})
    a.close()
    b.close()
    seen = [e["n"] for e in read_entries(tmp_path, "t")]
    assert sorted(seen) == list(range(60))
    files = log_files(tmp_path, "t")
    assert len(files) >= 5
    assert all(path.stat().st_size <= 400 for path, _ in files)
