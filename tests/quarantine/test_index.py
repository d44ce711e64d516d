"""The quarantine's SQLite search index: kept on every change, reconciled with the folder,
rebuilt when damaged, never giving an answer the files would not, and no plaintext in it when
the quarantine is encrypted."""

from __future__ import annotations

import copy
import json
import random
import secrets
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.config.load import load_config
from edgeward.quarantine.entry import EngineResult, QuarantineEntry
from edgeward.quarantine.index import INDEX_NAME, row_fields
from edgeward.quarantine.rekey import rekey
from edgeward.quarantine.service import QuarantineService, Search, open_store
from edgeward.quarantine.store import QuarantineStore

BODY = b"From: a@remote.test\r\nSubject: offer\r\n\r\nbuy now\r\n"
SENDERS = ("wave@spam.test", "Alice@Remote.test", "bob@other.test")
SUBJECTS = ("Cheap pills", "Invoice 42", "hello", "Ünïcode offer")


def entry(n: int, at: float) -> QuarantineEntry:
    return QuarantineEntry(
        "", SENDERS[n % 3], (f"u{n % 4}@example.test", "Shared@Example.test"),
        ("antivirus", "content-filter")[n % 2],
        subject=SUBJECTS[n % 4], findings=(("AV_INFECTED",), ("SCL_9", "PCL_1"))[n % 2], quarantined_at=at,
        decided_by=f"threshold quarantine {n % 5}",
        engines=(EngineResult("clamd", "AV_INFECTED", f"Eicar-Sig-{n % 3}"),) if n % 2 == 0 else (),
    )  # fmt: skip


def fill(store: QuarantineStore, count: int) -> list[str]:
    base = time.time() - 10 * 86400
    return [store.put(entry(n, base + n * 60), BODY) for n in range(count)]


def service(store: QuarantineStore) -> QuarantineService:
    return QuarantineService(store, lambda: None, lambda *a, **k: None)  # type: ignore[arg-type,return-value]


def by_files(store: QuarantineStore, q: Search) -> tuple[list[str], int]:
    """The answer without an index: every file read."""
    plain = copy.copy(store)
    plain.index = None
    page = service(plain).search(q)
    return [e.qid for e in page.entries], page.total


def by_index(store: QuarantineStore, q: Search) -> tuple[list[str], int]:
    page = service(store).search(q)
    return [e.qid for e in page.entries], page.total


QUERIES = [
    Search(), Search(limit=5), Search(offset=7, limit=3), Search(sender="WAVE"), Search(sender="alice@rem"),
    Search(recipient="u1@"), Search(recipient="shared"), Search(subject="ünï"), Search(subject="invoice"),
    Search(reason="content"), Search(reason="quarantine 3"), Search(finding="eicar-sig-2"),
    Search(finding="pcl_1"), Search(finding="clamd", sender="wave"), Search(sender="nobody"),
    Search(sender="a\nb"),
]  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> QuarantineStore:
    return QuarantineStore(tmp_path / "q", fsync=False, indexed=True)


def test_the_index_answers_as_the_files_do(store: QuarantineStore) -> None:
    qids = fill(store, 40)
    base = store.entry(qids[0]).quarantined_at
    dated = [
        Search(since=base + 600),
        Search(until=base + 1200, sender="bob"),
        Search(since=base, until=base + 1),
    ]
    for q in [*QUERIES, *dated]:
        assert by_index(store, q) == by_files(store, q), q
    for path in store.root.glob(INDEX_NAME + "*"):
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_changes_through_the_store_are_kept(store: QuarantineStore) -> None:
    qids = fill(store, 10)
    store.delete(qids[0])
    gone = store.expire(store.entry(qids[2]).quarantined_at)
    assert [e.qid for e in gone] == [qids[1]]
    store.rewrite(replace(store.entry(qids[3]), recipients=("only@example.test",)))
    store.set_aside(qids[4], "test")
    for q in (Search(), Search(recipient="only@"), Search(recipient="shared")):
        assert by_index(store, q) == by_files(store, q), q
    with sqlite3.connect(store.root / INDEX_NAME) as db:
        rows = {r[0] for r in db.execute("SELECT qid FROM entries")}
    assert rows == {p.stem for p in store.root.glob("*.json")}


def test_entries_written_behind_its_back_are_found_and_gone_ones_dropped(store: QuarantineStore) -> None:
    fill(store, 5)
    service(store).search()  # the index is built and settled
    other = QuarantineStore(store.root, fsync=False)  # an older release: no index
    extra = other.put(entry(99, time.time()), BODY)
    gone = sorted(store.root.glob("*.json"))[0]
    gone.unlink()
    ids, total = by_index(store, Search())
    assert extra in ids and gone.stem not in ids and total == 5


def test_a_row_older_than_its_file_is_corrected(store: QuarantineStore) -> None:
    qids = fill(store, 6)
    svc = service(store)
    svc.search()
    stale = store.entry(qids[2])
    # The file lost a recipient but the row (a crash between rename and row) still has it.
    other = QuarantineStore(store.root, fsync=False)
    other.rewrite(replace(stale, recipients=("else@example.test",)))
    page = svc.search(Search(recipient="u2@"))
    assert qids[2] not in [e.qid for e in page.entries]
    assert by_index(store, Search(recipient="u2@")) == by_files(store, Search(recipient="u2@"))


@pytest.mark.parametrize("damage", [b"this is not a database" * 100, b""])
def test_a_damaged_index_is_rebuilt_and_answers_right(store: QuarantineStore, damage: bytes) -> None:
    fill(store, 12)
    expected = by_files(store, Search(sender="wave"))
    service(store).search()
    assert store.index is not None
    store.index.close()
    (store.root / INDEX_NAME).write_bytes(damage)
    for suffix in ("-wal", "-shm"):
        (store.root / (INDEX_NAME + suffix)).unlink(missing_ok=True)
    fresh = QuarantineStore(store.root, fsync=False, indexed=True)
    assert by_index(fresh, Search(sender="wave")) == expected


def test_an_index_of_another_schema_is_rebuilt(store: QuarantineStore) -> None:
    fill(store, 4)
    service(store).search()
    with sqlite3.connect(store.root / INDEX_NAME) as db:
        db.execute("UPDATE state SET value = '999' WHERE key = 'schema'")
    fresh = QuarantineStore(store.root, fsync=False, indexed=True)
    assert by_index(fresh, Search()) == by_files(store, Search())


def test_an_encrypted_index_holds_no_plaintext_and_answers_right(tmp_path: Path) -> None:
    store = QuarantineStore(tmp_path / "q", fsync=False, key=secrets.token_bytes(32), indexed=True)
    fill(store, 20)
    for q in QUERIES:
        assert by_index(store, q) == by_files(store, q), q
    assert store.index is not None
    store.index.close()
    raw = b"".join(p.read_bytes() for p in store.root.glob(INDEX_NAME + "*"))
    for secret in (b"wave@spam.test", b"Invoice", b"u1@example.test", b"Eicar"):
        assert secret not in raw


def test_rekey_leaves_an_index_that_answers(tmp_path: Path) -> None:
    config = tmp_path / "edgeward.toml"
    config.write_text(
        f'accepted_domains = ["example.test"]\n[server]\ndata_dir = "{tmp_path / "data"}"\n'
        '[queue]\nfsync = false\n[quarantine]\nencryption_key_file = "keys/q.key"\n'
    )
    cfg = load_config(config)
    store = open_store(cfg)
    fill(store, 8)
    before = by_index(store, Search(sender="alice"))
    rekey(store, cfg.resolve(Path("keys/q.key")))
    assert by_index(open_store(cfg), Search(sender="alice")) == before


def test_reindex_command(tmp_path: Path) -> None:
    config = tmp_path / "edgeward.toml"
    config.write_text(f'accepted_domains = ["example.test"]\n[server]\ndata_dir = "{tmp_path / "data"}"\n')
    store = open_store(load_config(config))
    fill(store, 7)
    result = CliRunner().invoke(app, ["quarantine", "reindex", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"indexed": 7, "files": 7}
    text = CliRunner().invoke(app, ["quarantine", "reindex", "-c", str(config)]).output
    assert "indexed 7 of 7 entries" in text


def test_random_queries_agree_with_the_files(store: QuarantineStore) -> None:
    fill(store, 30)
    rng = random.Random(7)
    for _ in range(60):
        q = Search(
            sender=rng.choice(["", "wave", "ALICE", "@"]), recipient=rng.choice(["", "u3", "example"]),
            subject=rng.choice(["", "o", "pills"]), finding=rng.choice(["", "scl", "sig-1"]),
            offset=rng.randrange(5), limit=rng.randrange(1, 8),
        )  # fmt: skip
        assert by_index(store, q) == by_files(store, q), q


def test_row_fields_are_what_search_matches() -> None:
    e = entry(0, 0.0)
    sender, rcpts, subject, reason, findings = row_fields(e)
    assert sender == "wave@spam.test" and "shared@example.test" in rcpts.split("\n")
    assert reason == "antivirus\nthreshold quarantine 0" and "eicar-sig-0" in findings.split("\n")
    assert subject == "cheap pills"


def test_a_search_reads_only_the_files_of_its_page(
    store: QuarantineStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(store, 50)
    svc = service(store)
    svc.search()
    reads: list[Path] = []
    real = store._read
    monkeypatch.setattr(store, "_read", lambda path, sealer=None: reads.append(path) or real(path, sealer))
    monkeypatch.setattr(store, "list", lambda: pytest.fail("a search read every file"))
    page = svc.search(Search(sender="wave", limit=4))
    assert page.total == 17 and len(page.entries) == 4
    assert len(reads) == 4  # the page: reconciling found every entry already indexed
    assert all(e.mail_from == "wave@spam.test" for e in page.entries)


def test_an_index_that_cannot_be_written_leaves_the_files_to_answer(store: QuarantineStore) -> None:
    fill(store, 5)
    assert store.index is not None
    store.index.close()
    (store.root / INDEX_NAME).unlink()
    (store.root / INDEX_NAME).mkdir()  # neither a database nor removable as a file
    fresh = QuarantineStore(store.root, fsync=False, indexed=True)
    qid = fresh.put(entry(7, time.time()), BODY)  # the store still works; the index update is logged
    ids, total = by_index(fresh, Search())
    assert total == 6 and ids[0] == qid


def test_retention_finds_its_entries_through_the_index(
    store: QuarantineStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    qids = fill(store, 20)
    behind = QuarantineStore(store.root, fsync=False).put(entry(50, time.time() - 30 * 86400), BODY)
    cutoff = store.entry(qids[5]).quarantined_at
    monkeypatch.setattr(store, "list", lambda: pytest.fail("retention read every file"))
    gone = store.expire(cutoff)
    assert [e.qid for e in gone] == [behind, *qids[:5]]
    assert sorted(p.stem for p in store.root.glob("*.json")) == sorted(qids[5:])
