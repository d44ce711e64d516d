"""Handing files to the service user: who owns what root creates under a data folder."""

from __future__ import annotations

import asyncio
import os
import pwd
from pathlib import Path

import pytest

from edgeward.config.ownership import Owner, hand_over, make_private_dirs, service_owner
from edgeward.quarantine.store import QuarantineEntry, QuarantineStore
from edgeward.queue import MessageRecord, RecipientRecord, Spool
from edgeward.queue.files import write_new

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership only changes when running as root")


@pytest.fixture
def service() -> Owner:
    try:
        pw = pwd.getpwnam("edgeward")
    except KeyError:
        pytest.skip("no 'edgeward' user")
    return Owner(pw.pw_uid, pw.pw_gid)


@pytest.fixture
def data(tmp_path: Path, service: Owner) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    os.chown(path, service.uid, service.gid)
    return path


def owners(root: Path) -> set[int]:
    return {p.lstat().st_uid for p in root.rglob("*")}


def test_the_nearest_existing_folder_decides(tmp_path: Path, data: Path, service: Owner) -> None:
    assert service_owner(data) == service
    assert service_owner(data / "not" / "yet") == service
    assert service_owner(tmp_path) is None  # root's own folder: nobody to hand files to


def test_new_folders_and_files_go_to_the_owner(data: Path, service: Owner) -> None:
    make_private_dirs(data / "a" / "b", owner=service_owner(data))
    write_new(data / "a" / "b" / "f", b"x", sync=False, owner=service_owner(data))
    assert owners(data) == {service.uid}
    assert (data / "a" / "b").stat().st_mode & 0o777 == 0o700
    assert (data / "a" / "b" / "f").stat().st_mode & 0o777 == 0o600


def test_hand_over_repairs_only_root_owned_files(tmp_path: Path, data: Path, service: Owner) -> None:
    stray = data / "stray.db"
    stray.write_bytes(b"")
    hand_over(stray)
    assert stray.stat().st_uid == service.uid
    other = pwd.getpwnam("nobody")
    os.chown(stray, other.pw_uid, other.pw_gid)
    hand_over(stray)
    assert stray.stat().st_uid == other.pw_uid  # someone else's file is left alone
    outside = tmp_path / "root.txt"
    outside.write_bytes(b"")
    hand_over(outside)
    assert outside.stat().st_uid == 0


def test_spool_and_quarantine_written_as_root_belong_to_the_service(data: Path, service: Owner) -> None:
    spool = Spool(data / "queue", fsync=False)
    rec = MessageRecord("", "a@x.test", (RecipientRecord("b@y.test"),), 1.0, 3)
    msg_id = asyncio.run(spool.accept(rec, b"x\r\n"))
    spool.hold(msg_id)
    spool.release(msg_id)
    QuarantineStore(data / "quarantine", fsync=False).put(
        QuarantineEntry("", "a@x.test", ("b@y.test",), "test"), b"x\r\n"
    )
    assert owners(data) == {service.uid}


def test_certificates_made_as_root_stay_readable_by_the_service(data: Path, service: Owner) -> None:
    # `edgeward cert new` beside a running gateway: the store's index, keys, lock and folders
    # must be the service user's, or the gateway's next reload fails on a 0600 root file.
    from edgeward.tls.store import CertificateStore

    store = CertificateStore(data / "certs")
    info = store.create_self_signed("mail.example.test", key_type="ec")
    store.enable(info.thumbprint, "smtp")
    store.request("mail.example.test", key_type="ec")
    made = list(data.rglob("*"))
    assert {p.name for p in made} >= {"index.json", ".lock", "keys", "certs", "requests"}
    assert owners(data) == {service.uid}
