"""Fault injection into the spool: unreadable, truncated and garbage files in every folder.

Each bad entry must be moved to ``corrupt/`` (never deleted), reported through ``on_corrupt``,
and must not stop the scan, the recovery or the delivery of the good messages around it. The
files are real: garbage bytes, truncated JSON, a folder where a file should be (unreadable
even for root), and, in a child process running as the service user, root-owned 0600 files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgeward.config.schema import Config, QueueConfig, SendConnectorConfig, ServerConfig
from edgeward.delivery.dispatch import Dispatcher
from edgeward.delivery.manager import QueueManager
from edgeward.delivery.routing import Router
from edgeward.queue import MessageRecord, QueueState, RecipientRecord, Spool
from edgeward.queue.model import encode_record
from tests.e2e.harness import shared_tmpdir

BODY = b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: hi\r\nMessage-ID: <m@src.test>\r\n\r\nhello\r\n"
REPO = Path(__file__).resolve().parents[2]


class Reported:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def __call__(self, msg_id: str, reason: str) -> None:
        self.items.append((msg_id, reason))

    def ids(self) -> set[str]:
        return {i for i, _ in self.items}


class Events:
    def __init__(self) -> None:
        self.names: list[str] = []

    def event(self, event: str, **_fields: object) -> None:
        self.names.append(event)


def good_record(spool: Spool) -> MessageRecord:
    return MessageRecord("", "a@src.test", (RecipientRecord("b@dst.test"),), 1.0, len(BODY))


def bad_bytes(kind: str, msg_id: str, spool: Spool) -> bytes:
    whole = encode_record(MessageRecord(msg_id, "a@src.test", (RecipientRecord("b@dst.test"),), 1.0, 5))
    return {
        "garbage": b"\x00\xffnot a record at all\x1b[2J",
        "truncated": whole[: len(whole) // 2],
        "empty": b"",
        "wrong-id": whole.replace(msg_id.encode(), b"SOMEONEELSE0000000"),
        "no-recipients": json.dumps({"v": 1, "id": msg_id}).encode(),
    }[kind]


def plant(spool: Spool, state: QueueState, kind: str) -> str:
    msg_id = spool.new_id()
    path = spool.root / state.value / f"{msg_id}.json"
    if kind == "directory":
        path.mkdir()  # unreadable as a file, even for root
    elif kind == "fifo":
        os.mkfifo(path)  # reading it would block the event loop for good
    elif kind == "symlink":
        elsewhere = spool.root.parent / f"{msg_id}.elsewhere"
        elsewhere.write_bytes(
            bad_bytes("wrong-id", msg_id, spool).replace(b"SOMEONEELSE0000000", msg_id.encode())
        )
        path.symlink_to(elsewhere)
    else:
        path.write_bytes(bad_bytes(kind, msg_id, spool))
    (spool.root / "data" / f"{msg_id}.eml").write_bytes(BODY)
    return msg_id


def corrupt_names(spool: Spool) -> set[str]:
    return {p.name.split(".")[0] for p in (spool.root / "corrupt").iterdir()}


@pytest.fixture
def reported() -> Reported:
    return Reported()


@pytest.fixture
def spool(tmp_path: Path, reported: Reported) -> Spool:
    return Spool(tmp_path / "spool", fsync=False, on_corrupt=reported)


KINDS = ["garbage", "truncated", "empty", "wrong-id", "no-recipients", "directory", "fifo", "symlink"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("state", [QueueState.INCOMING, QueueState.DEFERRED, QueueState.HOLD])
async def test_a_bad_entry_is_moved_aside_and_the_rest_is_listed(
    spool: Spool, reported: Reported, state: QueueState, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = [await spool.accept(good_record(spool), BODY) for _ in range(2)]
    bad = plant(spool, state, kind)
    with caplog.at_level(logging.ERROR, logger="edgeward.queue.spool"):
        listed = spool.list()
    assert [r.id for r in listed if r.state is QueueState.INCOMING] == good
    assert [r.id for r in listed if r.state is QueueState.CORRUPT] == [bad]
    assert not (spool.root / state.value / f"{bad}.json").exists()
    assert corrupt_names(spool) == {bad}
    assert reported.ids() == {bad} and reported.items[0][1].startswith(state.value)
    assert f"queue entry {bad} moved from {state.value}/ to corrupt/" in caplog.text
    assert (spool.root / "data" / f"{bad}.eml").read_bytes() == BODY  # kept for inspection
    # Reported once: the next scan sees it in corrupt/ and leaves it there.
    spool.list()
    assert len(reported.items) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_due_skips_bad_entries_in_incoming_and_deferred(
    spool: Spool, reported: Reported, kind: str
) -> None:
    good = [await spool.accept(good_record(spool), BODY) for _ in range(3)]
    bad = {plant(spool, QueueState.INCOMING, kind), plant(spool, QueueState.DEFERRED, kind)}
    assert [r.id for r in spool.due(now=2.0, limit=10)] == good
    assert reported.ids() == bad == corrupt_names(spool)


async def test_recovery_moves_bad_entries_of_every_folder(spool: Spool, reported: Reported) -> None:
    good = await spool.accept(good_record(spool), BODY)
    folders = (QueueState.ACTIVE, QueueState.INCOMING, QueueState.DEFERRED, QueueState.HOLD)
    bad = {plant(spool, s, k) for s in folders for k in ("garbage", "directory", "fifo")}
    report = spool.recover()
    assert set(report.corrupt) == bad == reported.ids() == corrupt_names(spool)
    assert report.orphans_removed == 0  # the data of corrupt entries is kept
    assert [r.id for r in spool.due(now=2.0, limit=10)] == [good]


async def test_recovery_of_the_delivery_process_moves_bad_active_entries(
    spool: Spool, reported: Reported
) -> None:
    bad = plant(spool, QueueState.ACTIVE, "truncated")
    report = spool.recover(active_only=True)
    assert report.corrupt == (bad,) and reported.ids() == {bad}


async def test_a_second_corrupt_entry_of_the_same_id_does_not_replace_the_first(spool: Spool) -> None:
    bad = plant(spool, QueueState.INCOMING, "garbage")
    spool.list()
    (spool.root / "incoming" / f"{bad}.json").write_bytes(b"again")
    spool.list()
    names = sorted(p.name for p in (spool.root / "corrupt").iterdir())
    assert len(names) == 2 and f"{bad}.json" in names
    assert spool.recover().orphans_removed == 0  # both still tie to the data file
    assert (spool.root / "data" / f"{bad}.eml").exists()


async def test_holding_a_garbage_entry_does_not_overwrite_it(spool: Spool, reported: Reported) -> None:
    from edgeward.errors import QueueError

    bad = plant(spool, QueueState.INCOMING, "garbage")
    with pytest.raises(QueueError, match="corrupt"):
        spool.hold(bad)
    assert (spool.root / "corrupt" / f"{bad}.json").read_bytes() == bad_bytes("garbage", bad, spool)
    assert reported.ids() == {bad}


# -- the queue manager over a spool with bad files ---------------------------------------------


def drop_config(out: Path, **queue: object) -> Config:
    drop = SendConnectorConfig(name="drop", address_spaces=("*",), drop_dir=out)  # type: ignore[arg-type]
    return Config(
        server=ServerConfig(hostname="gw.test"),
        send_connectors=(drop,),
        queue=QueueConfig(fsync=False, **queue),  # type: ignore[arg-type]
    )


async def until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` (polled: log lines and files have no event to wait on)."""
    async with asyncio.timeout(30):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


def manager(spool: Spool, cfg: Config) -> QueueManager:
    return QueueManager(spool, Router.from_config(cfg), cfg, Events(), deliver=Dispatcher(cfg, None))


async def test_bad_metadata_and_data_files_do_not_stop_delivery(
    spool: Spool, reported: Reported, tmp_path: Path
) -> None:
    cfg = drop_config(tmp_path / "out")
    good = [await spool.accept(good_record(spool), BODY) for _ in range(3)]
    bad = {plant(spool, QueueState.INCOMING, "garbage"), plant(spool, QueueState.DEFERRED, "directory")}
    no_data = await spool.accept(good_record(spool), BODY)
    os.unlink(spool.root / "data" / f"{no_data}.eml")
    dir_data = await spool.accept(good_record(spool), BODY)
    os.unlink(spool.root / "data" / f"{dir_data}.eml")
    (spool.root / "data" / f"{dir_data}.eml").mkdir()  # a data file that cannot be read
    qm = manager(spool, cfg)
    await qm.run_once()
    assert sorted(p.stem for p in (tmp_path / "out").glob("*.eml")) == good
    assert reported.ids() == bad | {no_data, dir_data} == corrupt_names(spool)
    assert dict(reported.items)[dir_data] == "active: the data file cannot be read: Is a directory"
    # Later messages still go out.
    later = [await spool.accept(good_record(spool), BODY) for _ in range(2)]
    await qm.run_once()
    assert sorted(p.stem for p in (tmp_path / "out").glob("*.eml")) == sorted(good + later)


async def test_the_loop_survives_a_failing_scan(
    spool: Spool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = drop_config(tmp_path / "out", scan_interval=0.05)
    qm = manager(spool, cfg)
    deferred = spool.root / "deferred"
    deferred.rmdir()
    deferred.write_bytes(b"a file where the deferred folder should be")  # scandir: NotADirectoryError
    task = asyncio.create_task(qm.run())
    try:
        with caplog.at_level(logging.ERROR, logger="edgeward.delivery.manager"):
            await until(lambda: "queue scan failed" in caplog.text)
        assert not task.done()
        deferred.unlink()
        deferred.mkdir(mode=0o700)
        msg_id = await spool.accept(good_record(spool), BODY)
        qm.notify(msg_id)
        await until((tmp_path / "out" / f"{msg_id}.eml").exists)
        assert "NotADirectoryError" in caplog.text
    finally:
        await qm.stop(1)
        await asyncio.wait_for(task, 10)


# -- root-owned files, read by the service user ------------------------------------------------

_AS_SERVICE_USER = r"""
import asyncio, json, sys
from pathlib import Path
from edgeward.config.schema import Config, QueueConfig, SendConnectorConfig, ServerConfig
from edgeward.delivery.dispatch import Dispatcher
from edgeward.delivery.manager import QueueManager
from edgeward.delivery.routing import Router
from edgeward.queue import Spool

class Events:
    def event(self, event, **fields):
        pass

root, out = Path(sys.argv[1]), Path(sys.argv[2])
reported = []
spool = Spool(root, fsync=False, on_corrupt=lambda i, r: reported.append([i, r]))
cfg = Config(server=ServerConfig(hostname="gw.test"),
             send_connectors=(SendConnectorConfig(name="d", address_spaces=("*",), drop_dir=out),),
             queue=QueueConfig(fsync=False))
async def main():
    qm = QueueManager(spool, Router.from_config(cfg), cfg, Events(), deliver=Dispatcher(cfg, None))
    await qm.run_once()
asyncio.run(main())
print(json.dumps({"reported": sorted(reported), "delivered": sorted(p.stem for p in out.glob("*.eml"))}))
"""


def _service_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("needs root to make files the service user cannot read")
    try:
        return pwd.getpwnam("edgeward")
    except KeyError:
        pytest.skip("no 'edgeward' user")


@pytest.fixture
def shared() -> Iterator[Path]:
    path = shared_tmpdir("edgeward-spool-")  # pytest's own folders are root-only
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_root_owned_files_are_moved_aside_by_the_service_user(shared: Path) -> None:
    user = _service_user()
    base = shared / "data"
    base.mkdir()
    os.chown(base, user.pw_uid, user.pw_gid)
    spool = Spool(base / "spool", fsync=False)
    good = [await spool.accept(good_record(spool), BODY) for _ in range(3)]
    bad_meta = []
    for state in (QueueState.INCOMING, QueueState.DEFERRED):
        rec = await spool.accept(good_record(spool), BODY)
        if state is QueueState.DEFERRED:
            os.rename(spool.root / "incoming" / f"{rec}.json", spool.root / "deferred" / f"{rec}.json")
        bad_meta.append(rec)
    bad_data = await spool.accept(good_record(spool), BODY)
    for path in base.rglob("*"):
        os.chown(path, user.pw_uid, user.pw_gid)
    for rec in bad_meta:  # what an administrator's command as root used to leave behind
        path = next((spool.root).glob(f"*/{rec}.json"))
        os.chown(path, 0, 0)
        os.chmod(path, 0o600)
    os.chown(spool.root / "data" / f"{bad_data}.eml", 0, 0)
    os.chmod(spool.root / "data" / f"{bad_data}.eml", 0o600)

    out = base / "out"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _AS_SERVICE_USER, str(spool.root), str(out)],
        user=user.pw_uid, group=user.pw_gid, extra_groups=[], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")}, cwd="/", timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["delivered"] == sorted(good)
    reasons = dict(result["reported"])
    assert set(reasons) == {*bad_meta, bad_data}
    assert reasons[bad_meta[0]] == "incoming: unreadable: Permission denied"
    assert reasons[bad_meta[1]] == "deferred: unreadable: Permission denied"
    assert reasons[bad_data] == "active: the data file cannot be read: Permission denied"
    assert corrupt_names(spool) == {*bad_meta, bad_data}
