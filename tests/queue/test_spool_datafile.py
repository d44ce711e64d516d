"""The data file's head (``queue.datafile``): one flushed file per accepted message, metadata a
power cut took rebuilt from the head, finished messages never coming back, older files read."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

import edgeward.queue.commit as commit
import edgeward.queue.files as files
from edgeward.queue import MessageRecord, QueueState, RecipientRecord, Spool, datafile
from edgeward.queue.model import decode_record, encode_record

BODY = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hello\r\n\r\nhi\r\n"


def record(spool: Spool, **kw: object) -> MessageRecord:
    base = MessageRecord(
        id=spool.new_id(), mail_from="a@example.org", recipients=(RecipientRecord("b@example.net"),),
        received_at=1_700_000_000.0, size=len(BODY), client_ip="192.0.2.1",
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "queue")


def data_file(spool: Spool, msg_id: str) -> Path:
    return spool.root / "data" / f"{msg_id}.eml"


async def test_the_data_file_carries_the_record_and_readers_see_only_the_message(spool: Spool) -> None:
    rec = record(spool, mail_from="x@example.org")
    msg_id = await spool.accept(rec, BODY)
    raw = data_file(spool, msg_id).read_bytes()
    assert raw.startswith(b"EWQ1 ") and raw.endswith(BODY)
    embedded = datafile.embedded_record(data_file(spool, msg_id))
    assert embedded is not None
    assert decode_record(embedded, QueueState.INCOMING) == spool.load(msg_id)
    assert spool.read_data(msg_id) == BODY and spool.export(msg_id) == BODY
    with spool.open_data(msg_id) as fh:
        assert fh.read(5) == BODY[:5]


async def test_one_message_costs_one_file_flush_and_one_folder_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[str] = []
    real_sync_dir = commit.sync_dir

    def datasync(fd: int) -> None:
        flushed.append("file")
        os.fdatasync(fd)

    def sync_dir(path: Path) -> None:
        flushed.append(f"folder {path.name}")
        real_sync_dir(path)

    monkeypatch.setattr(files, "_datasync", datasync)
    monkeypatch.setattr(commit, "sync_dir", sync_dir)
    spool = Spool(tmp_path / "queue", fsync=True)
    msg_id = await spool.accept(record(spool), BODY)
    assert flushed == ["file", "folder data"]
    assert spool.load(msg_id).state is QueueState.INCOMING


@pytest.mark.parametrize("damage", ["lost", "empty", "torn"])
async def test_metadata_a_power_cut_took_is_rebuilt_from_the_head(spool: Spool, damage: str) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    before = spool.load(msg_id)
    meta = spool.root / "incoming" / f"{msg_id}.json"
    if damage == "lost":
        meta.unlink()
    else:
        meta.write_bytes(b"" if damage == "empty" else encode_record(before)[:20])
    report = Spool(spool.root).recover()
    assert report.restored == (msg_id,) and report.corrupt == () and report.orphans_removed == 0
    assert spool.load(msg_id) == before
    assert spool.read_data(msg_id) == BODY


async def test_a_deferred_record_that_does_not_parse_is_still_set_aside(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    spool.update(replace(spool.claim(msg_id), attempts=3), QueueState.DEFERRED)
    (spool.root / "deferred" / f"{msg_id}.json").write_bytes(b"")
    # The head holds the first record: rebuilding from it would forget the attempts made.
    report = spool.recover()
    assert report.corrupt == (msg_id,) and report.restored == ()


async def test_a_delivered_message_never_comes_back(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    spool.claim(msg_id)
    spool.finish(msg_id)
    assert os.listdir(spool.root / "data") == []
    # A crash between finish()'s two unlinks: the data file is left, marked.
    other = await spool.accept(record(spool), BODY)
    spool.claim(other)
    assert datafile.mark_finished(data_file(spool, other))
    os.unlink(spool.root / "active" / f"{other}.json")
    report = spool.recover()
    assert report.restored == () and report.orphans_removed == 1
    assert spool.list() == []


async def test_a_removed_message_never_comes_back(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    spool.remove(msg_id)
    assert spool.recover().restored == ()
    # A crash in the middle of remove(): marked, metadata moved to tmp/, data not yet unlinked.
    other = await spool.accept(record(spool), BODY)
    datafile.mark_finished(data_file(spool, other))
    os.rename(spool.root / "incoming" / f"{other}.json", spool.root / "tmp" / f"{other}.rm.x")
    report = spool.recover()
    assert report.restored == () and report.orphans_removed == 1 and spool.list() == []


async def test_a_remove_that_lost_the_race_leaves_the_message_live(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    spool.claim(msg_id)  # the queue manager took it first
    with pytest.raises(Exception, match="being delivered"):
        spool.remove(msg_id)
    spool.update(spool.load(msg_id), QueueState.DEFERRED)
    os.unlink(spool.root / "deferred" / f"{msg_id}.json")  # then a power cut took its record
    assert spool.recover().restored == (msg_id,)


async def test_a_failed_finish_unmarks_the_data(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    spool.claim(msg_id)
    os.rename(spool.root / "active" / f"{msg_id}.json", spool.root / "hold" / f"{msg_id}.json")
    real_unlink = os.unlink

    def vanished(path: object, *args: object, **kw: object) -> None:
        if str(path).endswith(f"{msg_id}.json"):
            raise FileNotFoundError(path)
        real_unlink(path, *args, **kw)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "unlink", vanished)
        with pytest.raises(KeyError):
            spool.finish(msg_id)
    assert data_file(spool, msg_id).read_bytes().startswith(b"EWQ1 ")


async def test_a_data_file_without_a_head_is_read_whole_and_its_orphan_deleted(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    data_file(spool, msg_id).write_bytes(BODY)  # as written before the head existed
    assert spool.read_data(msg_id) == BODY
    assert spool.load(msg_id).size == len(BODY)
    orphan = spool.new_id()
    data_file(spool, orphan).write_bytes(BODY)
    report = spool.recover()
    assert report.restored == () and report.orphans_removed == 1
    assert [r.id for r in spool.list()] == [msg_id]


@pytest.mark.parametrize("cut", [3, 12, 40])
async def test_a_head_cut_short_is_no_record(spool: Spool, cut: int) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    path = data_file(spool, msg_id)
    path.write_bytes(path.read_bytes()[:cut])
    assert datafile.embedded_record(path) is None
    (spool.root / "incoming" / f"{msg_id}.json").unlink()
    assert spool.recover().restored == ()


async def test_a_head_naming_another_id_is_not_restored_under_this_one(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    other = spool.new_id()
    os.rename(data_file(spool, msg_id), data_file(spool, other))
    (spool.root / "incoming" / f"{msg_id}.json").unlink()
    report = spool.recover()
    assert report.restored == () and report.orphans_removed == 1


@pytest.mark.parametrize("how", ["finish", "remove"])
async def test_a_crash_before_the_data_unlink_leaves_an_orphan_not_a_message(
    spool: Spool, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    import edgeward.queue.actions as actions
    import edgeward.queue.spool as spool_module

    msg_id = await spool.accept(record(spool), BODY)
    # The process dies where the data file would be unlinked: it stays behind.
    monkeypatch.setattr(spool_module, "unlink_quiet", lambda path: False)
    monkeypatch.setattr(actions, "unlink_quiet", lambda path: False)
    if how == "finish":
        spool.claim(msg_id)
        spool.finish(msg_id)
    else:
        spool.remove(msg_id)
    assert data_file(spool, msg_id).exists()
    monkeypatch.undo()
    report = Spool(spool.root).recover()
    assert report.restored == () and report.orphans_removed == 1 and spool.list() == []
