"""The certificate store: files and modes, bindings, removal, renewal and first-start default."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import trustme
from tls_helpers import FakeClock

from edgeward.tls.errors import (
    CertificateInUse,
    ExpiredCertificate,
    InvalidInput,
    NoBinding,
    NotSelfSigned,
    StoreCorrupt,
    UnknownCertificate,
)
from edgeward.tls.info import Binding
from edgeward.tls.store import CertificateStore, ensure_default


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_is_0600_and_folders_0700_even_with_a_permissive_umask(store: CertificateStore) -> None:
    old = os.umask(0)
    try:
        info = store.create_self_signed("mail.example.com")
    finally:
        os.umask(old)
    cert_path = store.root / "certs" / f"{info.thumbprint}.pem"
    key_path = store.root / "keys" / f"{info.thumbprint}.key"
    assert _mode(key_path) == 0o600
    assert _mode(store.root / "index.json") == 0o600
    assert _mode(cert_path) == 0o644
    for folder in (store.root, store.root / "keys", store.root / "certs", store.root / "requests"):
        assert _mode(folder) == 0o700
    assert b"PRIVATE KEY" in key_path.read_bytes()
    assert b"PRIVATE KEY" not in (store.root / "index.json").read_bytes()


def test_key_files_are_created_with_0600_not_chmodded_later(
    store: CertificateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[tuple[str, int, int]] = []
    real_open = os.open

    def spy(path: str | os.PathLike[str], flags: int, mode: int = 0o777, **kw: object) -> int:
        if flags & os.O_CREAT:
            created.append((os.fspath(path), flags, mode))
        return real_open(path, flags, mode, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", spy)  # fsutil calls os.open
    store.create_self_signed("mail.example.com")
    key_opens = [c for c in created if ".key." in c[0]]
    assert key_opens, "the key was not written through os.open"
    for _, flags, mode in key_opens:
        assert mode == 0o600
        assert flags & os.O_EXCL and flags & os.O_NOFOLLOW


def test_existing_loose_store_folder_is_tightened(store_root: Path, clock: FakeClock) -> None:
    store_root.mkdir(parents=True, mode=0o755)
    os.chmod(store_root, 0o755)
    CertificateStore(store_root, clock=clock).create_self_signed("mail.example.com")
    assert _mode(store_root) == 0o700


def test_ensure_default_creates_once_and_binds_smtp(store_root: Path, clock: FakeClock) -> None:
    cert_path, key_path = ensure_default(store_root, "mail.example.com", clock=clock)
    assert cert_path.is_absolute() and cert_path.is_file() and _mode(key_path) == 0o600
    again = ensure_default(store_root, "other.example.com", clock=clock)
    assert again == (cert_path, key_path)
    store = CertificateStore(store_root, clock=clock)
    [info] = store.list()
    assert info.bindings == (Binding("smtp"),)
    assert info.sans == ("mail.example.com", "mail")
    assert store.binding_for("smtp") == (cert_path, key_path)


def test_list_enable_binding_fallback_and_remove(store: CertificateStore) -> None:
    default = store.create_self_signed("mail.example.com")
    partner = store.create_self_signed("partner-mx.example.com", key_type="ec")
    assert store.enable(default.thumbprint, "smtp") is None
    assert store.enable(partner.thumbprint[:12].lower(), "smtp", "Partner") is None
    assert store.enable(default.thumbprint, "https") is None

    infos = {i.thumbprint: i for i in store.list()}
    assert infos[default.thumbprint].bindings == (Binding("https"), Binding("smtp"))
    assert infos[partner.thumbprint].bindings == (Binding("smtp", "Partner"),)
    assert infos[partner.thumbprint].key_type == "ec" and infos[partner.thumbprint].self_signed

    assert store.binding_for("smtp", "Partner")[0].name == f"{partner.thumbprint}.pem"
    assert store.binding_for("smtp", "Internet")[0].name == f"{default.thumbprint}.pem"  # falls back
    with pytest.raises(InvalidInput):
        store.enable(default.thumbprint, "imap")

    with pytest.raises(CertificateInUse):
        store.remove(partner.thumbprint)
    assert store.enable(default.thumbprint, "smtp", "Partner") == partner.thumbprint
    store.remove(partner.thumbprint)
    assert not (store.root / "keys" / f"{partner.thumbprint}.key").exists()
    assert [i.thumbprint for i in store.list()] == [default.thumbprint]

    store.remove(default.thumbprint, force=True)
    assert store.list() == []
    with pytest.raises(NoBinding):
        store.binding_for("smtp")


def test_unknown_and_short_thumbprints(store: CertificateStore) -> None:
    store.create_self_signed("mail.example.com")
    with pytest.raises(UnknownCertificate):
        store.enable("00" * 32, "smtp")
    with pytest.raises(UnknownCertificate):
        store.enable("ABC", "smtp")


def test_expired_certificate_is_not_bound_without_force(store: CertificateStore, clock: FakeClock) -> None:
    info = store.create_self_signed("mail.example.com", days=10)
    clock.advance(11)
    with pytest.raises(ExpiredCertificate):
        store.enable(info.thumbprint, "smtp")
    store.enable(info.thumbprint, "smtp", force=True)
    assert store.get(info.thumbprint).bindings == (Binding("smtp"),)


def test_renew_self_signed_moves_bindings_and_keeps_names(store: CertificateStore) -> None:
    old = store.create_self_signed(
        "mail.example.com", extra_sans=["smtp.example.com"], key_size=3072, days=90
    )
    store.enable(old.thumbprint, "smtp")
    store.enable(old.thumbprint, "smtp", "Internet")
    new_thumb = store.renew(old.thumbprint)

    assert new_thumb != old.thumbprint
    [new] = store.list()
    assert new.thumbprint == new_thumb
    assert new.sans == old.sans and new.subject == old.subject and new.key_size == 3072
    assert new.bindings == (Binding("smtp"), Binding("smtp", "Internet"))
    assert (new.not_after - new.not_before).days == 90
    assert not (store.root / "keys" / f"{old.thumbprint}.key").exists()
    assert _mode(store.root / "keys" / f"{new_thumb}.key") == 0o600


def test_renew_keep_old_marks_it_superseded(store: CertificateStore, clock: FakeClock) -> None:
    old = store.create_self_signed("mail.example.com", days=20)
    new_thumb = store.renew(old.thumbprint, keep_old=True, days=365)
    assert store.get(new_thumb).lifetime_days == 365
    assert {i.thumbprint for i in store.list()} == {old.thumbprint, new_thumb}
    report = store.renew_due(within_days=30)  # the kept old one is not renewed again
    assert [pair[0] for pair in report.renewed] == []


def test_renew_due_renews_only_self_signed_certificates_expiring_soon(store: CertificateStore) -> None:
    soon = store.create_self_signed("mail.example.com", days=20)
    later = store.create_self_signed("web.example.com", days=365)
    store.enable(soon.thumbprint, "smtp")

    report = store.renew_due(within_days=30)

    assert len(report.renewed) == 1 and report.renewed[0][0] == soon.thumbprint
    assert report.warnings == ()
    renewed = store.get(report.renewed[0][1])
    assert renewed.bindings == (Binding("smtp"),)
    assert renewed.lifetime_days == 365  # not 20 again, or it would be due at once
    assert {i.thumbprint for i in store.list()} == {renewed.thumbprint, later.thumbprint}
    assert store.renew_due(within_days=30).renewed == ()


def test_corrupt_index_is_reported(store: CertificateStore) -> None:
    store.create_self_signed("mail.example.com")
    (store.root / "index.json").write_text("{not json")
    with pytest.raises(StoreCorrupt):
        store.list()


def test_index_paths_cannot_leave_the_store(store: CertificateStore) -> None:
    info = store.create_self_signed("mail.example.com")
    store.enable(info.thumbprint, "smtp")
    doc = json.loads((store.root / "index.json").read_text())
    doc["certificates"][info.thumbprint]["key"] = "../../etc/shadow"
    (store.root / "index.json").write_text(json.dumps(doc))
    with pytest.raises(StoreCorrupt):
        store.binding_for("smtp")


def test_missing_key_file_is_reported(store: CertificateStore) -> None:
    info = store.create_self_signed("mail.example.com")
    store.enable(info.thumbprint, "smtp")
    (store.root / "keys" / f"{info.thumbprint}.key").unlink()
    with pytest.raises(StoreCorrupt):
        store.binding_for("smtp")


def test_renew_refuses_ca_issued(store: CertificateStore, ca: trustme.CA, tmp_path: Path) -> None:
    leaf = ca.issue_cert("mail.example.com")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(leaf.private_key_and_cert_chain_pem.bytes())
    info = store.import_pem(chain).info
    with pytest.raises(NotSelfSigned):
        store.renew(info.thumbprint)
