"""The users' lists kept as digests: no address in clear in the replica, lookups as before."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.directory import replica as replica_mod
from edgeward.directory.lists import digests, from_directory, hashed, listed, normalise
from edgeward.directory.push import state_from_json, state_to_json
from edgeward.directory.recipients import DirectorySenderLists
from edgeward.directory.replica import Entry, ReplicaReader, ReplicaState, read_replica, replica_path
from edgeward.directory.sync import sync
from edgeward.testing.slapd import SYNC_PW, Slapd, add_user
from edgeward.types import Address
from tests.directory.conftest import directory_config

# Every piece of the users' correspondents that must not be readable in the replica file.
CLEAR = (
    b"friend@partner.net",
    b"partner.net",
    b"friend",
    b"trusted.example",
    b"spam.example",
    b"boss@example.com",
    b"boss",
    b"example.com",
)


@pytest.fixture(autouse=True)
def _no_recheck_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica_mod, "_RECHECK", 0.0)


def _addr(text: str) -> Address:
    local, _, domain = text.rpartition("@")
    return Address(local, domain)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _no_clear_text(data: bytes) -> None:
    lowered = data.lower()
    for piece in CLEAR:
        assert piece not in lowered, piece


def test_normal_form_and_matching() -> None:
    assert normalise(" Friend@Partner.NET. ") == "friend@partner.net"
    assert normalise("@B\u00fccher.DE") == "@xn--bcher-kva.de"
    for bad in ("no-at-sign", "a@b@c", "a b@c", "x@", "@"):
        assert normalise(bad) is None
    assert hashed("Friend@Partner.net", "@trusted.example", "junk") == (
        _sha("friend@partner.net"),
        _sha("@trusted.example"),
    )
    values = hashed("friend@partner.net", "@b\u00fccher.de")
    assert listed(values, _addr("FRIEND@partner.NET"))
    assert listed(values, _addr("anyone@xn--bcher-kva.de"))
    assert listed(values, _addr("anyone@B\u00fccher.de"))
    assert not listed(values, _addr("other@partner.net"))
    assert not listed(values, _addr("anyone@sub.xn--bcher-kva.de"))
    assert not listed(values, Address.null())
    # A digest stays a digest (lower-cased); plaintext is hashed; the rest is dropped.
    assert digests([_sha("a@b.c").upper(), "a@b.c", "nonsense"]) == (_sha("a@b.c"),)


def test_sha256_values_kept_and_others_skipped_unlogged(caplog: pytest.LogCaptureFixture) -> None:
    good = _sha("friend@partner.net")
    with caplog.at_level(logging.WARNING, "edgeward.directory"):
        out = from_directory([good.upper(), "friend@partner.net", good[:-1], good + "0"], "sha256", "uid=a")
    assert out == (good,)
    assert caplog.text.count("not a SHA-256 hex digest skipped") == 3
    assert "partner" not in caplog.text


async def test_pull_sync_writes_no_list_address_in_clear(slapd: Slapd, tmp_path: Path) -> None:
    add_user(
        slapd.admin(),
        "alice",
        "alice@example.org",
        safe=("Friend@Partner.net", "@trusted.example"),
        blocked=("@spam.example",),
        safe_recipients=("boss@example.com",),
    )
    path = replica_path(tmp_path)
    sync(directory_config(slapd), SYNC_PW, path)
    _no_clear_text(path.read_bytes())
    alice = read_replica(path).by_address["alice@example.org"]
    assert alice.safe == hashed("friend@partner.net", "@trusted.example")
    assert alice.safe_recipients == hashed("boss@example.com")
    lists = DirectorySenderLists(ReplicaReader(path))
    rcpt = _addr("alice@example.org")
    assert await lists.trusts(rcpt, _addr("friend@partner.net"))
    assert await lists.trusts(rcpt, _addr("x@Trusted.Example"))
    assert not await lists.trusts(rcpt, _addr("x@partner.net"))
    assert await lists.blocks(rcpt, _addr("x@spam.example"))
    # What a push carries is the same digests.
    _no_clear_text(json.dumps(state_to_json(read_replica(path))).encode())


async def test_sha256_encoded_directory_end_to_end(
    slapd: Slapd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add_user(
        slapd.admin(),
        "alice",
        "alice@example.org",
        # A digest in capitals is still a digest; an address in clear in this mode is skipped.
        safe=(_sha("friend@partner.net").upper(), "boss@example.com", "zz" * 32),
        blocked=(_sha("@spam.example"),),
    )
    path = replica_path(tmp_path)
    with caplog.at_level(logging.WARNING, "edgeward.directory"):
        sync(directory_config(slapd, list_encoding="sha256"), SYNC_PW, path)
    assert caplog.text.count("not a SHA-256 hex digest skipped") == 2
    assert "boss" not in caplog.text
    data = path.read_bytes()
    _no_clear_text(data)
    assert _sha("friend@partner.net").encode() in data
    alice = read_replica(path).by_address["alice@example.org"]
    assert alice.safe == (_sha("friend@partner.net"),)
    lists = DirectorySenderLists(ReplicaReader(path))
    rcpt = _addr("alice@example.org")
    assert await lists.trusts(rcpt, _addr("Friend@partner.net"))
    assert not await lists.trusts(rcpt, _addr("boss@example.com"))
    assert await lists.blocks(rcpt, _addr("anyone@spam.example"))


def _downgrade(path: Path) -> None:
    """Make ``path`` what the earlier format wrote: lists in clear, no list_format."""
    db = sqlite3.connect(path)
    with db:
        db.execute("DELETE FROM lists")
        db.executemany(
            "INSERT INTO lists SELECT id, ?, ? FROM objects WHERE dn LIKE 'uid=alice,%'",
            [("safe", "Friend@Partner.net"), ("safe", "@trusted.example"), ("blocked", "@spam.example")],
        )
        db.execute("DELETE FROM meta WHERE key = 'list_format'")
    db.execute("VACUUM")
    db.close()


async def test_an_earlier_replica_loads_hashed_and_the_next_sync_rewrites_it(
    slapd: Slapd, tmp_path: Path
) -> None:
    conn = slapd.admin()
    add_user(conn, "alice", "alice@example.org")
    # A later entry carries the change marker, so the incremental sync below reads bob again
    # (the marker's own second) and keeps alice as the old replica had her.
    await asyncio.sleep(1.1)
    add_user(conn, "bob", "bob@example.org")
    path = replica_path(tmp_path / "state")
    cfg = directory_config(slapd)
    sync(cfg, SYNC_PW, path)
    _downgrade(path)
    assert b"friend@partner.net" in path.read_bytes().lower()
    state = read_replica(path)
    assert state.meta.list_format == "plain"
    assert state.by_address["alice@example.org"].safe == hashed("friend@partner.net", "@trusted.example")
    lists = DirectorySenderLists(ReplicaReader(path))
    rcpt = _addr("alice@example.org")
    assert await lists.trusts(rcpt, _addr("friend@partner.net"))
    assert await lists.blocks(rcpt, _addr("x@spam.example"))
    # status says so, and an incremental sync (the entry unchanged: kept from the old replica)
    # writes the file hashed.
    config = tmp_path / "edgeward.toml"
    config.write_text(f"[server]\ndata_dir = '{tmp_path}'\n")
    out = CliRunner().invoke(app, ["directory", "status", "-c", str(config)]).output
    assert "in clear" in out
    assert not sync(cfg, SYNC_PW, path).full
    _no_clear_text(path.read_bytes())
    state = read_replica(path)
    assert state.meta.list_format == "sha256"
    assert state.by_address["alice@example.org"].blocked == hashed("@spam.example")


def test_a_push_in_clear_from_an_earlier_host_is_stored_hashed(tmp_path: Path) -> None:
    old = ReplicaState({"1": Entry("1", "uid=a", "user", ("a@example.org",), safe=("friend@partner.net",))})
    body = json.loads(json.dumps(state_to_json(old.index())))
    body["entries"][0]["safe"] = ["friend@partner.net"]  # as an earlier version sends it
    state = state_from_json(body)
    assert state.entries["1"].safe == hashed("friend@partner.net")
    path = tmp_path / "directory.db"
    replica_mod.write_replica(path, state)
    _no_clear_text(path.read_bytes())
