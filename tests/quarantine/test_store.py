from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeward.quarantine.store import QuarantineEntry, QuarantineError, QuarantineStore


def test_put_get_list_delete_expire(tmp_path: Path) -> None:
    store = QuarantineStore(tmp_path / "q")
    qid = store.put(
        QuarantineEntry("", "a@remote.test", ("b@example.test",), "content-filter", scl=9), b"x\r\n"
    )
    entry, data = store.get(qid)
    assert (entry.qid, entry.scl, entry.size, data) == (qid, 9, 3, b"x\r\n")
    assert [e.qid for e in store.list()] == [qid]
    assert (tmp_path / "q" / f"{qid}.eml").stat().st_mode & 0o777 == 0o600
    assert [e.qid for e in store.expire(older_than=entry.quarantined_at + 1)] == [qid]
    assert store.list() == []
    with pytest.raises(KeyError):
        store.delete(qid)


@pytest.mark.parametrize("qid", ["../etc/passwd", "", "A" * 50, "abc/def"])
def test_ids_never_leave_the_folder(tmp_path: Path, qid: str) -> None:
    store = QuarantineStore(tmp_path / "q")
    with pytest.raises(KeyError):
        store.get(qid)
    with pytest.raises(KeyError):
        store.delete(qid)


def test_an_unreadable_entry_is_moved_aside_and_reported(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    store = QuarantineStore(tmp_path / "q", on_corrupt=lambda name, reason: seen.append((name, reason)))
    good = store.put(QuarantineEntry("", "a@remote.test", ("b@example.test",), "content-filter"), b"x\r\n")
    (tmp_path / "q" / "deadbeef00.json").write_text("{not json")
    (tmp_path / "q" / "deadbeef00.eml").write_bytes(b"kept")
    os.mkfifo(tmp_path / "q" / "deadbeef01.json")
    (tmp_path / "q" / "deadbeef02.json").mkdir()
    assert [e.qid for e in store.list()] == [good]
    assert sorted(n for n, _ in seen) == ["deadbeef00", "deadbeef01", "deadbeef02"]
    assert dict(seen)["deadbeef01"] == "not a regular file"
    assert (tmp_path / "q" / "corrupt" / "deadbeef00.eml").read_bytes() == b"kept"
    assert store.list() == store.list() and len(seen) == 3  # reported once


def test_get_of_an_unusable_entry_says_so(tmp_path: Path) -> None:
    store = QuarantineStore(tmp_path / "q")
    (tmp_path / "q" / "deadbeef00.json").write_text('{"qid": "deadbeef00"}')
    with pytest.raises(QuarantineError, match="set aside"):
        store.get("deadbeef00")
    assert (tmp_path / "q" / "corrupt" / "deadbeef00.json").exists()
    qid = store.put(QuarantineEntry("", "a@remote.test", ("b@example.test",), "content-filter"), b"x")
    (tmp_path / "q" / f"{qid}.eml").unlink()
    with pytest.raises(QuarantineError, match="no message file"):
        store.get(qid)
