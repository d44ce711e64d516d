from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.quarantine.store import QuarantineEntry, QuarantineStore


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


def test_an_unreadable_entry_is_skipped(tmp_path: Path) -> None:
    store = QuarantineStore(tmp_path / "q")
    (tmp_path / "q" / "deadbeef00.json").write_text("{not json")
    assert store.list() == []
