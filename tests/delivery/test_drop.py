"""Drop-folder delivery: unchanged bytes, envelope beside them, atomic and private files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from edgeward.delivery.drop import DropFolder
from edgeward.delivery.results import Deferred, Delivered
from edgeward.queue.model import MessageRecord, RecipientRecord

DATA = b"Subject: x\n\n.dot line\r\nbare\rcr\r\n"


def record(msg_id: str = "01ABC") -> MessageRecord:
    return MessageRecord(
        msg_id, "a@src.test", (RecipientRecord("b@dst.test"), RecipientRecord("c@dst.test")), 1.0, 9
    )


async def test_writes_message_and_envelope(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    rec = record()
    got = await DropFolder(folder).deliver(rec, rec.recipients, DATA)
    assert all(isinstance(r, Delivered) for r in got.values()) and set(got) == {"b@dst.test", "c@dst.test"}
    assert (folder / "01ABC.eml").read_bytes() == DATA
    envelope = json.loads((folder / "01ABC.json").read_text())
    assert envelope["mail_from"] == "a@src.test"
    assert envelope["recipients"] == ["b@dst.test", "c@dst.test"]
    assert stat.S_IMODE((folder / "01ABC.eml").stat().st_mode) == 0o640
    assert stat.S_IMODE((folder / "01ABC.json").stat().st_mode) == 0o640
    assert sorted(p.name for p in folder.iterdir()) == ["01ABC.eml", "01ABC.json"]  # no temporary left


async def test_retry_replaces_earlier_copy(tmp_path: Path) -> None:
    rec = record()
    await DropFolder(tmp_path, fsync=False).deliver(rec, rec.recipients, b"first\r\n")
    await DropFolder(tmp_path, fsync=False).deliver(rec, rec.recipients[:1], b"second\r\n")
    assert (tmp_path / "01ABC.eml").read_bytes() == b"second\r\n"
    assert json.loads((tmp_path / "01ABC.json").read_text())["recipients"] == ["b@dst.test"]


async def test_unwritable_folder_defers(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rec = record()
    got = await DropFolder(blocker / "sub").deliver(rec, rec.recipients, DATA)
    assert all(isinstance(r, Deferred) and r.reply.code == 451 for r in got.values())


async def test_bad_id_is_refused(tmp_path: Path) -> None:
    rec = record("../escape")
    got = await DropFolder(tmp_path).deliver(rec, rec.recipients, DATA)
    assert all(isinstance(r, Deferred) for r in got.values())
    assert not any(os.scandir(tmp_path))
