"""``edgeward quarantine`` release and delete: the re-queued record, tracking, ownership, bad entries."""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.quarantine import quarantine_app
from edgeward.logs.tracking import search
from edgeward.quarantine.store import QuarantineEntry, QuarantineStore
from edgeward.queue import MessageRecord, QueueState, RecipientRecord, Spool
from edgeward.queue.model import record_to_dict

BODY = b"From: a@remote.test\r\nSubject: offer\r\nMessage-ID: <q1@remote.test>\r\n\r\nbuy now\r\n"
runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n[queue]\nfsync = false\n')
    return path


def store(tmp_path: Path) -> QuarantineStore:
    return QuarantineStore(tmp_path / "data" / "quarantine", fsync=False)


def quarantined(tmp_path: Path, *, with_record: bool = True, at: float | None = None) -> str:
    record = MessageRecord(
        "01ORIGINAL", "a@remote.test",
        (RecipientRecord("u@example.test", notify=("FAILURE",), orcpt="rfc822;u@example.test"),),
        time.time() - 86400, len(BODY), client_ip="198.51.100.9", client_helo="mail.remote.test",
        connector="internet", message_id="<q1@remote.test>", envid="ENV-1", ret="HDRS",
    )  # fmt: skip
    entry = QuarantineEntry(
        "", "a@remote.test", ("u@example.test",), "content-filter", scl=9, client_ip="198.51.100.9",
        queue_record=record_to_dict(record) if with_record else None,
        **({"quarantined_at": at} if at is not None else {}),
    )  # fmt: skip
    return store(tmp_path).put(entry, BODY)


def release(config: Path, qid: str) -> str:
    r = runner.invoke(quarantine_app, ["release", qid, "--no-learn", "-c", str(config)])
    assert r.exit_code == 0, r.output
    return r.stdout.split()[-1]


def test_release_requeues_the_message_as_it_arrived(config: Path, tmp_path: Path) -> None:
    qid = quarantined(tmp_path)
    started = time.time()
    msg_id = release(config, qid)
    rec = Spool(tmp_path / "data" / "queue").load(msg_id)
    assert rec.state is QueueState.INCOMING and rec.id == msg_id != "01ORIGINAL"
    assert (rec.message_id, rec.client_helo, rec.connector) == (
        "<q1@remote.test>", "mail.remote.test", "internet"
    )  # fmt: skip
    assert (rec.envid, rec.ret, rec.client_ip) == ("ENV-1", "HDRS", "198.51.100.9")
    rcpt = RecipientRecord("u@example.test", notify=("FAILURE",), orcpt="rfc822;u@example.test")
    assert rec.recipients == (rcpt,)
    assert rec.received_at >= started  # expiry counts from the release, not from the arrival
    assert Spool(tmp_path / "data" / "queue").read_data(msg_id) == BODY
    assert store(tmp_path).list() == []
    [event] = search(tmp_path / "data" / "log", event="RELEASE")
    assert event["msg_id"] == msg_id and event["message_id"] == "<q1@remote.test>"
    assert qid in event["detail"] and event["recipients"] == ["u@example.test"]


def test_an_entry_from_before_the_queue_record_gets_its_message_id_from_the_header(
    config: Path, tmp_path: Path
) -> None:
    msg_id = release(config, quarantined(tmp_path, with_record=False))
    rec = Spool(tmp_path / "data" / "queue").load(msg_id)
    assert rec.message_id == "<q1@remote.test>" and rec.client_ip == "198.51.100.9"


def test_delete_is_tracked(config: Path, tmp_path: Path) -> None:
    qid = quarantined(tmp_path)
    r = runner.invoke(quarantine_app, ["delete", qid, "-c", str(config)])
    assert r.exit_code == 0, r.output
    [event] = search(tmp_path / "data" / "log", event="REMOVE")
    assert event["msg_id"] == qid and event["sender"] == "a@remote.test"


def test_a_garbage_entry_is_set_aside_and_reported(config: Path, tmp_path: Path) -> None:
    good = quarantined(tmp_path)
    folder = tmp_path / "data" / "quarantine"
    (folder / "0123456789abcdef.json").write_bytes(b"[1, 2")
    (folder / "0123456789abcdef.eml").write_bytes(BODY)
    r = runner.invoke(quarantine_app, ["list", "--json", "-c", str(config)])
    assert r.exit_code == 0 and good in r.stdout and "0123456789abcdef" not in r.stdout
    assert sorted(p.name for p in (folder / "corrupt").iterdir()) == [
        "0123456789abcdef.eml",
        "0123456789abcdef.json",
    ]
    [event] = search(tmp_path / "data" / "log", event="CORRUPT")
    assert event["msg_id"] == "0123456789abcdef" and event["detail"].startswith("quarantine: corrupt")
    (folder / "fedcba9876543210.json").write_bytes(b'{"qid": 5}')
    r = runner.invoke(quarantine_app, ["show", "fedcba9876543210", "-c", str(config)])
    assert r.exit_code == 1 and "set aside" in r.stderr


def test_release_as_root_leaves_everything_to_the_service_user(config: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    user = pwd.getpwnam("edgeward")
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, user.pw_uid, user.pw_gid)
    qid = quarantined(tmp_path)
    for path in data.rglob("*"):
        os.chown(path, user.pw_uid, user.pw_gid)  # as the gateway would have written them
    r = runner.invoke(quarantine_app, ["release", qid, "--learn", "-c", str(config)])
    assert r.exit_code == 0, r.output
    assert "learned" in r.stdout
    owned_by_root = [p for p in data.rglob("*") if p.lstat().st_uid == 0]
    assert owned_by_root == []
    assert (data / "state" / "content-model.db").lstat().st_uid == user.pw_uid
