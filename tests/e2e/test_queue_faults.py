"""Faults in a running gateway's queue and quarantine: bad files, a dying queue manager, retention.

``edgeward serve`` started as root runs as the ``edgeward`` user; files planted by root (0600)
in ``queue/incoming/`` and ``queue/deferred/`` are then unreadable to it, as the files the
administrator's commands used to leave behind were. Mail must keep flowing to a real downstream
(Postfix's smtp-sink), the bad files must end up in ``corrupt/`` with a CORRUPT tracking event,
and ``edgeward queue hold``/``release`` run as root must leave files the gateway can read.
"""

from __future__ import annotations

import logging
import os
import pwd
import smtplib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeward.delivery.manager import QueueManager
from edgeward.logs.tracking import search
from edgeward.quarantine.store import QuarantineEntry, QuarantineStore
from edgeward.queue.model import MessageRecord, RecipientRecord, encode_record
from tests.e2e.harness import GatewayProcess, InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e

BODY = b"From: <a@remote.test>\r\nSubject: planted\r\nMessage-ID: <planted@remote.test>\r\n\r\nplanted\r\n"


def send(port: int, rcpt: str, tag: str) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        c.ehlo("client.example.test")
        c.mail("a@example.test")
        c.rcpt(rcpt)
        head = f"From: <a@remote.test>\r\nSubject: {tag}\r\nMessage-ID: <{tag}@example.test>\r\n"
        code, text = c.data(f"{head}\r\n{tag}\r\n".encode())
        assert code == 250, text
        return text.decode().rsplit(" ", 1)[-1]


def wait_until(condition: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``condition`` until it gives something true (the gateway runs in another process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise TimeoutError("condition not met")


def plant(queue: Path, folder: str, kind: str) -> str:
    """A bad entry written by root: a valid record in a 0600 root file, or garbage."""
    msg_id = f"01PLANTED{kind.upper()[:4]}{folder.upper()[:4]}"
    record = MessageRecord(msg_id, "a@example.test", (RecipientRecord("b@example.test"),), time.time(), 1)
    data, meta = queue / "data" / f"{msg_id}.eml", queue / "tmp" / f"{msg_id}.planted"
    data.write_bytes(BODY)
    meta.write_bytes(encode_record(record) if kind == "root" else b"\x00\x01 not json \xff")
    for path in (data, meta):
        os.chown(path, 0, 0)
        os.chmod(path, 0o600)
    os.rename(meta, queue / folder / f"{msg_id}.json")  # appears whole, as the CLI's files did
    return msg_id


def write_config(root: Path, port: int, sink: SmtpSink, dead_port: int) -> Path:
    path = root / "edgeward.toml"
    path.write_text(
        f"""accepted_domains = ["example.test"]
[server]
hostname = "mx.example.test"
data_dir = "{root}"
user = "edgeward"
shutdown_grace = 5
[queue]
fsync = false
glitch_retry_interval = 1
transient_retry_interval = 1
scan_interval = 0.2
[[receive_connectors]]
name = "relay"
bindings = ["127.0.0.1:{port}"]
remote_ranges = ["127.0.0.1/32"]
permissions = ["submit", "relay"]
tarpit_interval = 0
[[send_connectors]]
name = "slow"
address_spaces = ["slow.test"]
smart_hosts = ["127.0.0.1:{dead_port}"]
connect_timeout = 5
[[send_connectors]]
name = "out"
address_spaces = ["*"]
smart_hosts = ["127.0.0.1:{sink.port}"]
"""
    )
    return path


def events(root: Path, event: str) -> list[dict[str, Any]]:
    return list(search(root / "log", event=event))


@pytest.fixture
def service_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("needs root: the gateway must run as a user that cannot read root's files")
    try:
        return pwd.getpwnam("edgeward")
    except KeyError:
        pytest.skip("no 'edgeward' user")


@pytest.fixture
def served(workdir: Path, sink: SmtpSink, service_user: pwd.struct_passwd) -> Iterator[tuple[Path, int]]:
    port = free_port()
    config = write_config(workdir, port, sink, dead_port=free_port())
    gw = GatewayProcess(config, port).start()
    try:
        yield config, port
    finally:
        assert gw.stop() == 0


def test_root_owned_and_garbage_files_do_not_stop_delivery(
    served: tuple[Path, int], workdir: Path, sink: SmtpSink
) -> None:
    _, port = served
    queue = workdir / "queue"
    bad = {plant(queue, folder, kind) for folder in ("incoming", "deferred") for kind in ("root", "junk")}
    sent = [send(port, "b@example.test", f"after-{n}") for n in range(3)]
    got = sink.wait_for(3)
    assert sorted(m.split(b"Subject: ", 1)[1].split(b"\n", 1)[0] for m in got) == [
        b"after-0", b"after-1", b"after-2"
    ]  # fmt: skip
    wait_until(lambda: {e["msg_id"] for e in events(workdir, "CORRUPT")} >= bad)
    assert sorted(e["msg_id"] for e in events(workdir, "CORRUPT")) == sorted(bad)  # each once
    assert {p.name for p in (queue / "corrupt").iterdir()} == {f"{b}.json" for b in bad}
    assert all((queue / "data" / f"{b}.eml").exists() for b in bad)  # kept for the administrator
    # Later mail still flows, and every accepted message was delivered.
    send(port, "b@example.test", "later")
    assert len(sink.wait_for(4)) == 4
    delivered = {e["msg_id"] for e in search(workdir / "log", event="SEND")}
    assert set(sent) <= delivered


def _owners(queue: Path, msg_id: str) -> set[int]:
    """Owners of the message's files; it keeps being retried, so a file may move while we look."""
    owners: set[int] = set()
    for path in queue.rglob("*"):
        if msg_id in path.name:
            try:
                owners.add(path.lstat().st_uid)
            except FileNotFoundError:
                continue
    return owners


def test_hold_and_release_as_root_leave_files_the_gateway_reads(
    served: tuple[Path, int], workdir: Path, service_user: pwd.struct_passwd
) -> None:
    config, port = served
    msg_id = send(port, "x@slow.test", "slow")
    wait_until(lambda: any(e["msg_id"] == msg_id for e in events(workdir, "DEFER")))
    cli = [sys.executable, "-m", "edgeward", "queue"]
    for action in ("hold", "release"):
        done = subprocess.run([*cli, action, msg_id, "-c", str(config)], capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
    released = next(e for e in events(workdir, "RELEASE") if e["msg_id"] == msg_id)
    assert released["message_id"] == "<slow@example.test>"
    # The gateway reads the rewritten record and tries again: a DEFER after the release.
    wait_until(
        lambda: any(e["msg_id"] == msg_id and e["time"] > released["time"] for e in events(workdir, "DEFER"))
    )
    queue = workdir / "queue"
    assert not any(queue.glob(f"corrupt/{msg_id}*"))
    assert _owners(queue, msg_id) == {service_user.pw_uid}
    admin = [e["event"] for e in search(workdir / "log", msg_id=msg_id) if e["event"] in ("HOLD", "RELEASE")]
    assert admin == ["HOLD", "RELEASE"]


def test_bad_files_present_at_start_are_moved_aside_by_recovery(
    workdir: Path, sink: SmtpSink, service_user: pwd.struct_passwd
) -> None:
    port = free_port()
    config = write_config(workdir, port, sink, dead_port=free_port())
    gw = GatewayProcess(config, port).start()  # makes the folders, then is stopped
    assert gw.stop() == 0
    queue = workdir / "queue"
    folders = ("incoming", "deferred", "hold")
    junk = {plant(queue, folder, "junk") for folder in folders}
    # Root's files present at start are handed to the service user by serve itself, so these
    # valid records are simply delivered (the one in hold/ stays held).
    root = {plant(queue, folder, "root") for folder in folders}
    gw = GatewayProcess(config, port).start()
    try:
        send(port, "b@example.test", "after-restart")
        assert len(sink.wait_for(3)) == 3
        assert {p.name for p in (queue / "corrupt").iterdir()} == {f"{b}.json" for b in junk}
        assert {e["msg_id"] for e in events(workdir, "CORRUPT")} == junk
        assert [p.stem for p in (queue / "hold").iterdir()] == [r for r in root if r.endswith("HOLD")]
    finally:
        assert gw.stop() == 0


# -- in one process: a dying queue manager, quarantine retention -------------------------------


def test_a_dead_queue_manager_is_restarted_and_logged(
    workdir: Path, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_run = QueueManager.run
    calls: list[int] = []

    async def dies_once(self: QueueManager) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("queue manager killed for the test")
        await real_run(self)

    monkeypatch.setattr(QueueManager, "run", dies_once)
    port = free_port()
    with (
        caplog.at_level(logging.WARNING, logger="edgeward.tasks"),
        InProcessGateway(gateway_config(workdir, port=port, sink_port=sink.port)),
    ):
        wait_until(lambda: "background task queue-manager restarted" in caplog.text)
        send(port, "b@example.test", "after-restart")
        sink.wait_for(1)
    assert len(calls) == 2
    died = next(r for r in caplog.records if "queue-manager died" in r.getMessage())
    assert died.levelno == logging.ERROR and died.exc_info is not None
    assert "queue manager killed for the test" in str(died.exc_info[1])


def test_quarantine_retention_deletes_and_tracks_old_entries(workdir: Path) -> None:
    config = gateway_config(
        workdir, port=free_port(), agents={"content_filter": {"quarantine_retention": "30d"}}
    )
    store = QuarantineStore(workdir / "quarantine", fsync=False)
    old = store.put(QuarantineEntry("", "a@remote.test", ("u@example.test",), "content-filter",
                                    quarantined_at=time.time() - 31 * 86400), BODY)  # fmt: skip
    fresh = store.put(QuarantineEntry("", "a@remote.test", ("u@example.test",), "content-filter"), BODY)
    (workdir / "quarantine" / "0123456789abcdef.json").write_bytes(b"{broken")
    with InProcessGateway(config):
        expired = wait_until(lambda: events(workdir, "EXPIRE"))
        wait_until(lambda: events(workdir, "CORRUPT"))
    assert [e["msg_id"] for e in expired] == [old]
    assert expired[0]["detail"] == "quarantine retention" and expired[0]["sender"] == "a@remote.test"
    assert [e.qid for e in store.list()] == [fresh]
    assert (workdir / "quarantine" / "corrupt" / "0123456789abcdef.json").exists()
