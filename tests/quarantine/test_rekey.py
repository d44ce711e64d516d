"""``edgeward quarantine rekey``: a new key id, every entry sealed again in place, the old key
readable until done and retired after, entries under an unknown key reported and untouched."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.config.load import load_config
from edgeward.quarantine.crypto import KeyMismatch, Keyring, Sealer, key_id_of, previous_path
from edgeward.quarantine.rekey import rekey
from edgeward.quarantine.service import open_store
from edgeward.quarantine.store import QuarantineEntry, QuarantineStore

BODY = b"From: a@remote.test\r\nSubject: offer\r\n\r\nbuy now, secret words\r\n"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text(
        f'accepted_domains = ["example.test"]\n[server]\ndata_dir = "{tmp_path / "data"}"\n'
        '[queue]\nfsync = false\n[quarantine]\nencryption_key_file = "keys/q.key"\n'
    )
    return path


def entry(subject: str) -> QuarantineEntry:
    return QuarantineEntry("", "a@remote.test", ("u@example.test",), "antivirus", subject=subject)


def key_ids(root: Path) -> set[bytes | None]:
    return {key_id_of(p.read_bytes()) for p in root.iterdir() if p.suffix in (".eml", ".json")}


def test_rekey_seals_every_entry_under_a_new_key_and_retires_the_old(config: Path, tmp_path: Path) -> None:
    cfg = load_config(config)
    store = open_store(cfg)
    plain = QuarantineStore(store.root, fsync=False).put(entry("from before encryption"), BODY)
    qids = [store.put(entry(f"m{n}"), BODY) for n in range(5)]
    key_file = cfg.resolve(Path("keys/q.key"))
    old = key_file.read_bytes()
    old_id = Sealer(old).key_id
    assert key_ids(store.root) == {old_id, None}

    seen: list[tuple[int, int]] = []
    report = rekey(store, key_file, progress=lambda n, total: seen.append((n, total)))
    new = key_file.read_bytes()
    assert new != old and report.key_id == Sealer(new).key_id.hex()
    assert key_ids(store.root) == {Sealer(new).key_id}  # the plaintext entry is sealed too
    assert report.resealed == 12 and report.plaintext == 2 and report.under_new_key == 12
    assert seen[-1] == (6, 6)
    assert (report.retired, report.kept) == (1, 0) and not previous_path(key_file).exists()
    # Everything reads back, through a store opened afresh with only the new key.
    fresh = QuarantineStore(store.root, fsync=False, key=new)
    assert sorted(e.qid for e in fresh.list()) == sorted([plain, *qids])
    assert fresh.get(qids[0])[1] == BODY
    assert not any(BODY in p.read_bytes() for p in store.root.iterdir() if p.is_file())
    with pytest.raises(KeyMismatch):
        QuarantineStore(store.root, fsync=False, key=old).get(qids[0])
    assert not [p for p in store.root.iterdir() if p.name.endswith(".tmp")]


def test_a_running_store_follows_the_rotation(config: Path) -> None:
    cfg = load_config(config)
    gateway = open_store(cfg)  # what the running gateway holds
    before = gateway.put(entry("before"), BODY)
    admin = open_store(cfg)
    rekey(admin, cfg.resolve(Path("keys/q.key")))
    # The gateway's next entry is under the new key, and it still reads the old ones.
    after = gateway.put(entry("after"), BODY)
    new_id = Sealer(cfg.resolve(Path("keys/q.key")).read_bytes()).key_id
    assert key_id_of((gateway.root / f"{after}.json").read_bytes()) == new_id
    assert gateway.get(before)[1] == BODY and gateway.get(after)[1] == BODY


def test_the_old_key_stays_readable_while_entries_use_it(config: Path) -> None:
    cfg = load_config(config)
    key_file = cfg.resolve(Path("keys/q.key"))
    store = open_store(cfg)
    qid = store.put(entry("old"), BODY)
    old = key_file.read_bytes()
    # A rotation stopped after installing the new key (the old one is in .previous): the
    # entry under the old key still reads, through a keyring opened now.
    previous_path(key_file).write_bytes(old)
    previous_path(key_file).chmod(0o600)
    key_file.write_bytes(secrets.token_bytes(32))
    ring = Keyring(key_file)
    assert ring.sealer().key_id != Sealer(old).key_id
    assert QuarantineStore(store.root, fsync=False, keyring=ring).get(qid)[1] == BODY
    # Running rekey again finishes the job and retires both old keys.
    report = rekey(open_store(cfg), key_file)
    assert report.resealed == 2 and report.retired == 2 and not previous_path(key_file).exists()


def test_entries_under_an_unknown_key_are_reported_and_untouched(config: Path) -> None:
    cfg = load_config(config)
    store = open_store(cfg)
    good = store.put(entry("good"), BODY)
    stranger = QuarantineStore(store.root, fsync=False, key=secrets.token_bytes(32))
    foreign = stranger.put(entry("foreign"), BODY)
    files = {p: p.read_bytes() for p in store.root.glob(f"{foreign}.*")}
    report = rekey(store, cfg.resolve(Path("keys/q.key")))
    assert report.unknown_key == [foreign]
    assert {p: p.read_bytes() for p in files} == files
    assert store.get(good)[1] == BODY
    assert stranger.get(foreign)[1] == BODY


def test_the_command_shows_progress_results_and_exit_codes(config: Path, tmp_path: Path) -> None:
    cfg = load_config(config)
    store = open_store(cfg)
    for n in range(3):
        store.put(entry(f"m{n}"), BODY)
    result = CliRunner().invoke(app, ["quarantine", "rekey", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["resealed"] == 6 and report["unknown_key"] == [] and report["retired"] == 1
    QuarantineStore(store.root, fsync=False, key=secrets.token_bytes(32)).put(entry("x"), BODY)
    result = CliRunner().invoke(app, ["quarantine", "rekey", "-c", str(config)])
    assert result.exit_code == 1
    assert "sealed under a key this host does not hold" in result.output
    assert "new key id" in result.output
    plain = tmp_path / "plain.toml"
    plain.write_text(config.read_text().split("[quarantine]")[0])
    result = CliRunner().invoke(app, ["quarantine", "rekey", "-c", str(plain)])
    assert result.exit_code == 2 and "not encrypted" in result.output


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to the service user needs root")
def test_as_root_the_new_key_and_entries_belong_to_the_service_user(config: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 65534, 65534)
    cfg = load_config(config)
    store = open_store(cfg)
    store.put(entry("m"), BODY)
    assert CliRunner().invoke(app, ["quarantine", "rekey", "-c", str(config)]).exit_code == 0
    for path in [cfg.resolve(Path("keys/q.key")), *store.root.iterdir()]:
        assert path.stat().st_uid == 65534, path
