"""Pull sync against a real slapd: full, incremental, paging, the guards, and a directory dying."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from ldap3 import MODIFY_ADD, MODIFY_DELETE

from edgeward.directory.ldap import DirectoryError
from edgeward.directory.lists import hashed
from edgeward.directory.replica import read_replica, replica_path
from edgeward.directory.sync import SyncRefused, sync
from edgeward.testing.slapd import SUFFIX, SYNC_PW, Slapd, add_user, users_ldif
from tests.directory.conftest import directory_config

PEOPLE = f"ou=people,{SUFFIX}"


def _seed(server: Slapd) -> None:
    conn = server.admin()
    add_user(
        conn, "alice", "Alice@Example.org", alternates=("a.smith@example.org",), safe=("friend@partner.net",)
    )
    add_user(conn, "bob", "bob@example.org", blocked=("@spam.example",))
    conn.add(
        f"cn=Vendor,ou=contacts,{SUFFIX}",
        ["inetOrgPerson"],
        {"cn": "Vendor", "sn": "Vendor", "mail": "vendor@example.org"},
    )
    conn.add(
        f"cn=sales,ou=groups,{SUFFIX}",
        ["groupOfNames", "edgewardMailUser"],
        {"cn": "sales", "member": [f"uid=alice,{PEOPLE}"], "mailAlternateAddress": "sales@example.org"},
    )
    conn.add(
        f"cn=example.org,ou=domains,{SUFFIX}",
        ["applicationProcess", "domainRelatedObject"],
        {"cn": "example.org", "associatedDomain": "example.org"},
    )


def test_full_then_incremental_add_change_rename_delete(slapd: Slapd, tmp_path: Path) -> None:
    _seed(slapd)
    cfg = directory_config(slapd)
    path = replica_path(tmp_path)
    report = sync(cfg, SYNC_PW, path)
    assert report.full and report.entries == 4
    state = read_replica(path)
    alice = state.by_address["alice@example.org"]
    assert alice.kind == "user" and state.by_address["a.smith@example.org"] is alice
    assert alice.safe == hashed("friend@partner.net")
    assert state.by_address["bob@example.org"].blocked == hashed("@spam.example")
    assert state.by_address["vendor@example.org"].kind == "contact"
    assert [g.dn for g in state.groups_of(alice)] == [f"cn=sales,ou=groups,{SUFFIX}"]
    assert state.domains == {"example.org"}
    assert state.meta.marker and state.meta.last_full > 0

    time.sleep(1.1)  # modifyTimestamp has a one-second grain
    conn = slapd.admin()
    add_user(conn, "carol", "carol@example.org")
    conn.modify(
        f"uid=bob,{PEOPLE}",
        {
            "mailAlternateAddress": [(MODIFY_ADD, ["robert@example.org"])],
            "edgewardBlockedSender": [(MODIFY_DELETE, [])],
        },
    )
    conn.modify_dn(f"uid=alice,{PEOPLE}", "uid=alice2")
    conn.delete(f"cn=Vendor,ou=contacts,{SUFFIX}")
    report = sync(cfg, SYNC_PW, path)
    assert not report.full
    assert (report.added, report.removed, report.entries) == (1, 1, 4)
    state = read_replica(path)
    assert "carol@example.org" in state.by_address
    bob = state.by_address["robert@example.org"]
    assert bob is state.by_address["bob@example.org"] and bob.blocked == ()
    assert state.by_address["alice@example.org"].dn == f"uid=alice2,{PEOPLE}"
    assert state.by_address["alice@example.org"].id == alice.id
    assert "vendor@example.org" not in state.by_address
    assert state.meta.last_incremental > state.meta.last_full


def test_five_thousand_entries_are_read_page_by_page(slapd: Slapd, tmp_path: Path) -> None:
    slapd.load(users_ldif(5000))
    pages: list[int] = []
    cfg = directory_config(slapd, page_size=500)
    report = sync(cfg, SYNC_PW, replica_path(tmp_path), progress=pages.append)
    assert report.entries == 5000
    assert pages == [500] * 10
    state = read_replica(replica_path(tmp_path))
    assert len(state.by_address) == 10000 and "alias4999@example.org" in state.by_address


def test_unpaged_search_beyond_the_server_limit_fails(slapd: Slapd, tmp_path: Path) -> None:
    # The fixture's server serves at most 1,000 entries a page, as AD does: paging is needed.
    slapd.load(users_ldif(1200))
    with pytest.raises(DirectoryError):
        sync(directory_config(slapd, page_size=5000), SYNC_PW, replica_path(tmp_path))
    assert not replica_path(tmp_path).exists()


def test_mass_delete_is_refused_without_force(slapd: Slapd, tmp_path: Path) -> None:
    slapd.load(users_ldif(100))
    path = replica_path(tmp_path)
    cfg = directory_config(slapd, max_delete_share=0.2)
    sync(cfg, SYNC_PW, path)
    conn = slapd.admin()
    for i in range(25):
        conn.delete(f"uid=u{i},{PEOPLE}")
    with pytest.raises(SyncRefused, match="25 of 100"):
        sync(cfg, SYNC_PW, path)
    assert len(read_replica(path).entries) == 100
    # A wrong base DN empties the result: refused the same way.
    with pytest.raises(SyncRefused):
        sync(directory_config(slapd, base_dn=f"ou=contacts,{SUFFIX}"), SYNC_PW, path, full=True)
    report = sync(cfg, SYNC_PW, path, force=True)
    assert report.removed == 25 and len(read_replica(path).entries) == 75


def test_directory_stopping_mid_sync_keeps_the_previous_replica(slapd: Slapd, tmp_path: Path) -> None:
    slapd.load(users_ldif(1500))
    path = replica_path(tmp_path)
    cfg = directory_config(slapd, page_size=500, timeout=3.0)
    sync(cfg, SYNC_PW, path)
    before = path.read_bytes()
    slapd.load(users_ldif(300, start=1500))

    def stop_after_first_page(_count: int) -> None:
        slapd.stop()

    with pytest.raises(DirectoryError):
        sync(cfg, SYNC_PW, path, full=True, progress=stop_after_first_page)
    assert path.read_bytes() == before
    assert len(read_replica(path).entries) == 1500
    assert not list(tmp_path.glob(".*.tmp"))
    # And with the directory down from the start.
    with pytest.raises(DirectoryError):
        sync(cfg, SYNC_PW, path)
    assert path.read_bytes() == before


def test_starttls_works_and_ldaps_too(slapd: Slapd, tmp_path: Path) -> None:
    _seed(slapd)
    for url in (slapd.ldap_url, slapd.ldaps_url):
        report = sync(directory_config(slapd, urls=(url,)), SYNC_PW, replica_path(tmp_path), full=True)
        assert report.entries == 4


def test_first_server_down_falls_back_to_the_next(slapd: Slapd, tmp_path: Path) -> None:
    _seed(slapd)
    cfg = directory_config(slapd, urls=("ldaps://127.0.0.1:1", slapd.ldaps_url))
    assert sync(cfg, SYNC_PW, replica_path(tmp_path)).entries == 4
