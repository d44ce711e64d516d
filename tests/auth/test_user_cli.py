"""``edgeward user``: the account commands, run through Typer's test runner."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.auth.addresses import AccountAddresses
from edgeward.auth.users import UserStore
from edgeward.cli.user import user_app
from edgeward.state.sqlite import StateStore

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "edgeward.db"


def run(db: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(user_app, [*args, "--state", str(db)], input=input)
    return result.exit_code, result.stdout, result.stderr


def verify(db: Path, name: str, password: str) -> bool:
    with StateStore(db) as state:
        return asyncio.run(UserStore(state).verify(name, password))


def test_add_with_password_stdin_then_verify(db: Path) -> None:
    code, out, _ = run(db, "add", "Alice", "--password-stdin", input="s3cret pass\n")
    assert code == 0, out
    assert "added user alice" in out
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert verify(db, "alice", "s3cret pass")
    assert not verify(db, "alice", "s3cret pass\n")


def test_add_prompts_twice_when_not_reading_stdin(db: Path) -> None:
    code, out, _ = run(db, "add", "bob", input="pw-1\npw-1\n")
    assert code == 0, out
    assert "pw-1" not in out
    assert verify(db, "bob", "pw-1")


def test_add_with_mismatched_prompts_retries(db: Path) -> None:
    code, out, _ = run(db, "add", "bob", input="one\ntwo\nthree\nthree\n")
    assert code == 0, out
    assert verify(db, "bob", "three")


def test_add_twice_is_a_clear_error(db: Path) -> None:
    run(db, "add", "alice", "--password-stdin", input="pw\n")
    code, _, err = run(db, "add", "ALICE", "--password-stdin", input="pw\n")
    assert code == 2
    assert "exists" in err


@pytest.mark.parametrize(("name", "stdin"), [("bad\x01name", "pw\n"), ("alice", "\n"), ("alice", "a\x00b\n")])
def test_bad_name_or_password_is_exit_2(db: Path, name: str, stdin: str) -> None:
    code, _, err = run(db, "add", name, "--password-stdin", input=stdin)
    assert code == 2
    assert err.startswith("error:")


def test_list_as_table_and_json_without_hashes(db: Path) -> None:
    run(db, "add", "bob", "--password-stdin", input="pw\n")
    run(db, "add", "alice", "--password-stdin", input="pw\n")
    run(db, "disable", "bob")
    code, out, _ = run(db, "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [(u["name"], u["disabled"]) for u in listed] == [("alice", False), ("bob", True)]
    assert all(set(u) == {"name", "disabled", "created", "updated"} for u in listed)
    code, out, _ = run(db, "list")
    assert code == 0
    assert "alice" in out and "disabled" in out
    assert "argon2" not in out


def test_list_without_a_database_is_empty_and_creates_nothing(db: Path) -> None:
    code, out, _ = run(db, "list", "--json")
    assert code == 0
    assert json.loads(out) == []
    assert not db.exists()


def test_passwd_changes_the_password(db: Path) -> None:
    run(db, "add", "alice", "--password-stdin", input="old\n")
    code, out, _ = run(db, "passwd", "ALICE", "--password-stdin", input="new\n")
    assert code == 0, out
    assert verify(db, "alice", "new")
    assert not verify(db, "alice", "old")


def test_passwd_of_unknown_user_fails_before_asking(db: Path) -> None:
    run(db, "add", "alice", "--password-stdin", input="pw\n")
    code, out, err = run(db, "passwd", "ghost")
    assert code == 2
    assert "no user" in err
    assert "Password" not in out


def test_disable_enable_remove(db: Path) -> None:
    run(db, "add", "alice", "--password-stdin", input="pw\n")
    assert run(db, "disable", "alice")[0] == 0
    assert not verify(db, "alice", "pw")
    assert run(db, "enable", "alice")[0] == 0
    assert verify(db, "alice", "pw")
    assert run(db, "remove", "alice")[0] == 0
    assert not verify(db, "alice", "pw")
    code, _, err = run(db, "remove", "alice")
    assert code == 2
    assert "no user" in err


def test_commands_on_a_missing_database_are_clear_errors(db: Path) -> None:
    code, _, err = run(db, "disable", "alice")
    assert code == 2
    assert "no state database" in err
    assert not db.exists()


def test_state_path_comes_from_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "edgeward.toml"
    config.parent.mkdir()
    config.write_text('[server]\ndata_dir = "../var"\n')
    result = runner.invoke(
        user_app, ["add", "alice", "--password-stdin", "--config", str(config)], input="pw\n"
    )
    assert result.exit_code == 0, result.output
    expected = (tmp_path / "var" / "state" / "edgeward.db").resolve()
    assert expected.exists()
    assert verify(expected, "alice", "pw")


def test_unreadable_configuration_is_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(user_app, ["list", "--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def _addresses(db: Path, name: str) -> list[str]:
    with StateStore(db) as state:
        return AccountAddresses(state).list(name)


def test_add_with_addresses_and_manage_them(db: Path) -> None:
    code, out, _ = run(
        db, "add", "alice", "--address", "Alice@Example.TEST", "-a", "@sales.example.test",
        "--password-stdin", input="pw\n",
    )  # fmt: skip
    assert code == 0, out
    assert _addresses(db, "alice") == ["@sales.example.test", "alice@example.test"]
    code, out, _ = run(db, "address", "add", "ALICE", "a.smith@example.test")
    assert code == 0 and "alice may send as a.smith@example.test" in out.replace("ALICE", "alice")
    code, out, _ = run(db, "address", "list", "alice")
    assert out.split() == ["@sales.example.test", "a.smith@example.test", "alice@example.test"]
    assert run(db, "address", "remove", "alice", "@SALES.example.test")[0] == 0
    code, _, err = run(db, "address", "remove", "alice", "@sales.example.test")
    assert code == 2 and "has no address" in err


@pytest.mark.parametrize("bad", ["not an address", "alice@", "<a@b.test>", "@", "a@b@c.test"])
def test_a_bad_address_is_exit_2_and_adds_no_account(db: Path, bad: str) -> None:
    code, _, err = run(db, "add", "alice", "--address", bad, "--password-stdin", input="pw\n")
    assert code == 2 and err.startswith("error:")
    code, out, _ = run(db, "list", "--json")
    assert json.loads(out) == []


def test_addresses_of_an_unknown_user_are_clear_errors(db: Path) -> None:
    run(db, "add", "alice", "--password-stdin", input="pw\n")
    code, _, err = run(db, "address", "add", "ghost", "g@example.test")
    assert code == 2 and "no user" in err
    code, _, err = run(db, "address", "list", "ghost")
    assert code == 2 and "no user" in err
