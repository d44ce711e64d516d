"""``edgeward queue`` actions as an administrator: tracking events, and files left to the service.

Run as root (the tests are), with a data folder owned by the service user, nothing the commands
write may end up owned by root: the gateway, running as that user, must still read it.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.queue import queue_app
from edgeward.logs.tracking import search
from edgeward.queue import MessageRecord, RecipientRecord, Spool

BODY = b"From: a@example.org\r\nMessage-ID: <m@example.org>\r\n\r\nbody\r\n"
runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n[queue]\nfsync = false\n')
    return path


def add(root: Path) -> str:
    spool = Spool(root, fsync=False)
    rec = MessageRecord("", "a@example.org", (RecipientRecord("b@example.net"),), time.time(), len(BODY),
                        client_ip="192.0.2.7", message_id="<m@example.org>")  # fmt: skip
    return asyncio.run(spool.accept(rec, BODY))


def invoke(*args: str) -> str:
    r = runner.invoke(queue_app, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout


def test_hold_release_remove_are_tracked(config: Path, tmp_path: Path) -> None:
    msg_id = add(tmp_path / "data" / "queue")
    invoke("hold", msg_id, "--reason", "looks odd", "-c", str(config))
    invoke("release", msg_id, "-c", str(config))
    invoke("remove", msg_id, "--ndr", "-c", str(config))
    found = list(search(tmp_path / "data" / "log", msg_id=msg_id))
    assert [e["event"] for e in found] == ["HOLD", "RELEASE", "REMOVE"]
    assert {e["message_id"] for e in found} == {"<m@example.org>"}
    assert {e["sender"] for e in found} == {"a@example.org"}
    assert found[0]["recipients"] == ["b@example.net"] and found[0]["client_ip"] == "192.0.2.7"
    assert "looks odd" in found[0]["detail"]
    assert "failure notice queued as" in found[2]["detail"]


def test_a_garbage_entry_met_by_a_command_is_tracked_as_corrupt(config: Path, tmp_path: Path) -> None:
    root = tmp_path / "data" / "queue"
    add(root)
    (root / "incoming" / "01BROKEN.json").write_bytes(b"\x00garbage")
    invoke("list", "-c", str(config))
    [entry] = search(tmp_path / "data" / "log", event="CORRUPT")
    assert entry["msg_id"] == "01BROKEN" and entry["detail"].startswith("queue incoming: corrupt")
    assert (root / "corrupt" / "01BROKEN.json").read_bytes() == b"\x00garbage"


def test_without_a_configuration_actions_still_work(tmp_path: Path) -> None:
    root = tmp_path / "q"
    msg_id = add(root)
    invoke("hold", msg_id, "--spool", str(root), "-c", str(tmp_path / "absent.toml"))
    assert Spool(root).load(msg_id).hold_reason == "admin"


def _root_owned(base: Path) -> list[Path]:
    return [p for p in [base, *base.rglob("*")] if p.lstat().st_uid == 0]


def test_files_written_as_root_belong_to_the_owner_of_the_data_folder(config: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    user = pwd.getpwnam("edgeward")
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, user.pw_uid, user.pw_gid)
    first, second = add(data / "queue"), add(data / "queue")
    invoke("hold", first, "-c", str(config))
    invoke("release", first, "-c", str(config))
    invoke("hold", second, "-c", str(config))
    invoke("remove", second, "--ndr", "-c", str(config))  # queues a new message: the report
    invoke("retry", "--all", "-c", str(config))
    assert _root_owned(data) == []
    assert {p.lstat().st_uid for p in data.rglob("*")} == {user.pw_uid}
    assert (data / "log" / "tracking-admin.log").exists()
