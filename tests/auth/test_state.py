"""The SQLite state store: file mode, pragmas, migrations and transactions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edgeward.state import MIGRATIONS, Migration, StateStore, StateStoreError, default_db_path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_default_path_is_under_data_dir(tmp_path: Path) -> None:
    assert default_db_path(tmp_path) == tmp_path / "state" / "edgeward.db"


def test_new_database_is_0600_in_a_0700_folder(db_path: Path) -> None:
    with StateStore(db_path) as store:
        store.run(lambda c: c.execute("SELECT 1").fetchone(), write=True)
        assert mode(db_path) == 0o600
        assert mode(db_path.parent) == 0o700
        for side in ("-wal", "-shm"):
            # Present while a connection is open in WAL mode; SQLite copies the database's mode.
            assert mode(db_path.with_name(db_path.name + side)) == 0o600


def test_loose_permissions_are_tightened(db_path: Path) -> None:
    StateStore(db_path).connect()
    os.chmod(db_path, 0o644)
    with StateStore(db_path):
        assert mode(db_path) == 0o600


def test_wal_and_synchronous_normal(state: StateStore) -> None:
    assert state.run(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
    # 1 is NORMAL (0 OFF, 2 FULL, 3 EXTRA).
    assert state.run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 1


def test_migrations_bring_the_schema_to_the_last_version(state: StateStore) -> None:
    assert state.schema_version() == len(MIGRATIONS)
    columns = state.run(lambda c: [r[1] for r in c.execute("PRAGMA table_info(users)")])
    assert columns == ["name", "hash", "disabled", "created", "updated"]


def test_a_later_migration_runs_once_on_an_existing_database(db_path: Path) -> None:
    with StateStore(db_path) as store:
        store.run(
            lambda c: c.execute("INSERT INTO users VALUES ('a', 'h', 0, 1, 1)"),
            write=True,
        )
    extra = Migration(len(MIGRATIONS) + 1, "greylist", "CREATE TABLE greylist (k TEXT PRIMARY KEY);")
    for _ in range(2):  # the second open finds nothing to do
        with StateStore(db_path, migrations=(*MIGRATIONS, extra)) as store:
            assert store.schema_version() == extra.version
            assert store.run(lambda c: c.execute("SELECT COUNT(*) FROM users").fetchone()[0]) == 1
            assert store.run(lambda c: c.execute("SELECT COUNT(*) FROM greylist").fetchone()[0]) == 0


def test_a_failing_migration_leaves_the_previous_version(db_path: Path) -> None:
    StateStore(db_path).connect()
    broken = Migration(len(MIGRATIONS) + 1, "broken", "CREATE TABLE t (x INT);\nSELECT * FROM nowhere;")
    with pytest.raises(StateStoreError):
        StateStore(db_path, migrations=(*MIGRATIONS, broken)).connect()
    with StateStore(db_path) as store:
        assert store.schema_version() == len(MIGRATIONS)
        assert (
            store.run(lambda c: c.execute("SELECT name FROM sqlite_master WHERE name='t'").fetchone()) is None
        )


def test_a_database_from_a_newer_release_is_refused(db_path: Path) -> None:
    newer = Migration(len(MIGRATIONS) + 1, "future", "CREATE TABLE future (x INT);")
    StateStore(db_path, migrations=(*MIGRATIONS, newer)).connect()
    with pytest.raises(StateStoreError, match="newer"):
        StateStore(db_path).connect()


def test_migrations_must_be_numbered_in_order(db_path: Path) -> None:
    with pytest.raises(ValueError, match="out of order"):
        StateStore(db_path, migrations=(Migration(2, "skip", "SELECT 1;"),))


def test_create_false_refuses_a_missing_file(db_path: Path) -> None:
    with pytest.raises(StateStoreError, match="no state database"):
        StateStore(db_path, create=False).connect()
    assert not db_path.exists()


def test_transaction_commits_or_rolls_back(state: StateStore) -> None:
    with state.transaction() as conn:
        conn.execute("INSERT INTO users VALUES ('a', 'h', 0, 1, 1)")
    with pytest.raises(RuntimeError, match="boom"), state.transaction() as conn:
        conn.execute("INSERT INTO users VALUES ('b', 'h', 0, 1, 1)")
        raise RuntimeError("boom")
    names = state.run(lambda c: [r[0] for r in c.execute("SELECT name FROM users")])
    assert names == ["a"]


def test_transactions_do_not_nest(state: StateStore) -> None:
    with state.transaction(), pytest.raises(RuntimeError, match="nest"), state.transaction():
        pass


def test_sqlite_errors_become_state_store_errors(state: StateStore) -> None:
    with pytest.raises(StateStoreError):
        state.run(lambda c: c.execute("SELECT * FROM nowhere"))


def test_name_is_case_insensitive_primary_key(state: StateStore) -> None:
    state.run(lambda c: c.execute("INSERT INTO users VALUES ('Alice', 'h', 0, 1, 1)"), write=True)
    with pytest.raises(StateStoreError):
        state.run(lambda c: c.execute("INSERT INTO users VALUES ('ALICE', 'h', 0, 1, 1)"), write=True)


def test_closed_store_refuses_work(db_path: Path) -> None:
    store = StateStore(db_path)
    with pytest.raises(StateStoreError, match="not connected"):
        store.run(lambda c: c.execute("SELECT 1"))
    store.connect()
    store.close()
    assert not store.is_connected


def test_data_written_by_one_connection_is_seen_by_another(db_path: Path) -> None:
    with StateStore(db_path) as writer, StateStore(db_path) as reader:
        writer.run(lambda c: c.execute("INSERT INTO users VALUES ('a', 'h', 0, 1, 1)"), write=True)
        assert reader.run(lambda c: c.execute("SELECT name FROM users").fetchall()) == [("a",)]


async def test_call_runs_in_a_worker_thread(state: StateStore) -> None:
    import threading

    main = threading.get_ident()
    where = await state.call(lambda c: threading.get_ident())
    assert where != main
    assert await state.call(lambda c: c.execute("SELECT 41 + 1").fetchone()[0]) == 42


def test_not_a_database_is_a_clear_error(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not sqlite" * 100)
    os.chmod(db_path, 0o600)
    with pytest.raises(StateStoreError, match="state database"):
        StateStore(db_path).connect()
