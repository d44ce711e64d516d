"""TLS, bind and escaping rules of the sync, against a real slapd; the AD mapping."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
import trustme
from ldap3 import SUBTREE
from pydantic import ValidationError

from edgeward.config.directory import DirectoryConfig
from edgeward.directory.ldap import DirectoryError, LdapDirectory, read_password, value_filter
from edgeward.directory.replica import read_replica, replica_path
from edgeward.directory.sync import smtp_address, sync
from edgeward.testing.slapd import SUFFIX, SYNC_PW, AdUsn, Slapd, add_user, replace_attr
from tests.directory.conftest import directory_config

INJECTIONS = ("*)(uid=*", "*", "\x00", "a\\2a", "x)(|(mail=*", "*)(objectClass=*))(|(mail=*")


def test_plaintext_bind_is_refused_unless_allowed_on_loopback(slapd: Slapd, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="plaintext"):
        directory_config(slapd, urls=(slapd.ldap_url,), starttls=False)
    with pytest.raises(ValidationError, match="plaintext"):
        DirectoryConfig(urls=("ldap://ldap.example.org",), starttls=False, allow_plaintext_loopback=True)
    cfg = directory_config(slapd, urls=(slapd.ldap_url,), starttls=False, allow_plaintext_loopback=True)
    assert sync(cfg, SYNC_PW, replica_path(tmp_path)).entries == 0


def test_empty_password_is_refused_before_connecting(slapd: Slapd, tmp_path: Path) -> None:
    empty = tmp_path / "pw"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(DirectoryError, match="empty"):
        read_password(empty)
    empty.write_text(SYNC_PW)
    empty.chmod(0o640)
    with pytest.raises(DirectoryError, match="readable by others"):
        read_password(empty)
    with pytest.raises(DirectoryError, match="empty"):
        LdapDirectory(directory_config(slapd), "")
    with pytest.raises(DirectoryError, match="anonymous"):
        LdapDirectory(directory_config(slapd, bind_dn=""), SYNC_PW)


def test_wrong_password_is_a_clear_error(slapd: Slapd) -> None:
    with pytest.raises(DirectoryError, match=r"invalidCredentials|invalid"):
        LdapDirectory(directory_config(slapd), "wrong").open()


@pytest.mark.parametrize("starttls", [False, True])
def test_certificate_of_another_ca_is_refused(slapd: Slapd, tmp_path: Path, starttls: bool) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    url = slapd.ldap_url if starttls else slapd.ldaps_url
    with pytest.raises(DirectoryError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        sync(directory_config(slapd, urls=(url,), ca_file=other), SYNC_PW, replica_path(tmp_path))
    assert not replica_path(tmp_path).exists()


def test_certificate_for_another_name_is_refused(tmp_path: Path) -> None:
    server = Slapd.create(tmp_path / "named", names=("ldap.example.org",))
    server.start()
    try:
        for url in (server.ldaps_url, server.ldap_url):
            with pytest.raises(DirectoryError, match=r"match|mismatch"):
                LdapDirectory(directory_config(server, urls=(url,)), SYNC_PW).open()
    finally:
        server.remove()


@pytest.mark.parametrize("value", INJECTIONS)
def test_filter_values_are_escaped(slapd: Slapd, value: str) -> None:
    add_user(slapd.admin(), "alice", "alice@example.org")
    with LdapDirectory(directory_config(slapd), SYNC_PW) as directory:
        assert directory.conn is not None
        directory.conn.search(SUFFIX, value_filter("mail", value), SUBTREE, attributes=["mail"])
        assert [r for r in directory.conn.response if r["type"] == "searchResEntry"] == []
        found = list(directory.search(SUFFIX, value_filter("mail", "alice@example.org"), ["mail"]))
        assert len(found) == 1


def test_hostile_addresses_in_the_directory_sync_as_text(slapd: Slapd, tmp_path: Path) -> None:
    conn = slapd.admin()
    add_user(conn, "mallory", "x*)(uid=*@example.org", alternates=("*@example.org", "ok@example.org"))
    sync(directory_config(slapd), SYNC_PW, replica_path(tmp_path))
    state = read_replica(replica_path(tmp_path))
    # Taken literally: a "*" address is one odd address, never a wildcard.
    assert set(state.by_address) == {"x*)(uid=*@example.org", "*@example.org", "ok@example.org"}
    assert "anyone@example.org" not in state.by_address


def test_proxy_addresses_prefixes() -> None:
    assert smtp_address("SMTP:Jane.Doe@Example.org") == "jane.doe@example.org"
    assert smtp_address("smtp:jd@example.org") == "jd@example.org"
    assert smtp_address("X500:/o=Org/ou=Exchange/cn=Recipients/cn=jane") is None
    assert smtp_address("SIP:jane@example.org") is None
    assert smtp_address("not an address") is None
    assert smtp_address("plain@example.org") == "plain@example.org"


def _ad_entry(conn: object, dn: str, classes: list[str], usn: AdUsn, **attrs: object) -> bytes:
    guid = uuid.uuid4().bytes_le
    conn.add(dn, classes, {"objectGUID": guid, "uSNChanged": usn.next(), **attrs})  # type: ignore[attr-defined]
    return guid


def test_ad_mapping_full_and_incremental(slapd: Slapd, tmp_path: Path) -> None:
    conn, usn, ad = slapd.admin(), AdUsn(), f"ou=ad,{SUFFIX}"
    jane = f"cn=Jane,{ad}"
    guid = _ad_entry(
        conn,
        jane,
        ["user"],
        usn,
        cn="Jane",
        sn="Doe",
        sAMAccountName="jane",
        proxyAddresses=[
            "SMTP:Jane.Doe@example.org",
            "smtp:jane@example.org",
            "X500:/o=Org/cn=jane",
            "SIP:jane@example.org",
        ],
    )
    _ad_entry(
        conn,
        f"cn=Partner,{ad}",
        ["contact"],
        usn,
        cn="Partner",
        sn="P",
        proxyAddresses=["SMTP:partner@other.example"],
    )
    _ad_entry(
        conn,
        f"cn=Staff,{ad}",
        ["group"],
        usn,
        cn="Staff",
        member=[jane],
        proxyAddresses=["SMTP:staff@example.org"],
    )
    _ad_entry(conn, f"cn=NoMail,{ad}", ["user"], usn, cn="NoMail", sn="N")
    conn.add(
        f"cn=example.org,{ad}",
        ["msExchAcceptedDomain"],
        {"cn": "example.org", "msExchAcceptedDomainName": "Example.org"},
    )
    cfg = directory_config(slapd, mapping="ad", base_dn=ad)
    path = replica_path(tmp_path)
    assert sync(cfg, SYNC_PW, path).entries == 3
    state = read_replica(path)
    entry = state.by_address["jane.doe@example.org"]
    assert entry.id == str(uuid.UUID(bytes_le=guid)) and entry.kind == "user"
    assert entry.addresses == ("jane.doe@example.org", "jane@example.org")
    assert state.by_address["partner@other.example"].kind == "contact"
    assert [g.addresses for g in state.groups_of(entry)] == [("staff@example.org",)]
    assert state.domains == {"example.org"} and state.meta.marker == "1003"

    replace_attr(conn, jane, "proxyAddresses", ["SMTP:jane@example.org"])
    replace_attr(conn, jane, "uSNChanged", [usn.next()])
    conn.delete(f"cn=Partner,{ad}")
    report = sync(cfg, SYNC_PW, path)
    assert not report.full and report.changed == 1 and report.removed == 1
    state = read_replica(path)
    assert "jane.doe@example.org" not in state.by_address
    assert state.by_address["jane@example.org"].id == entry.id
    assert state.meta.marker == "1005"


def test_referrals_are_not_followed(slapd: Slapd, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    conn = slapd.admin()
    add_user(conn, "alice", "alice@example.org")
    # A subordinate referral to another server, as a directory split across servers has.
    conn.add(
        f"ou=branch,{SUFFIX}",
        ["referral", "extensibleObject"],
        {"ou": "branch", "ref": "ldap://ldap.elsewhere.example/ou=branch,dc=example,dc=org"},
    )
    with caplog.at_level(logging.INFO, "edgeward.directory.ldap"):
        report = sync(directory_config(slapd), SYNC_PW, replica_path(tmp_path))
    assert report.entries == 1
    assert "ldap.elsewhere.example" in caplog.text and "not followed" in caplog.text
