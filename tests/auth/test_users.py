"""User accounts: names, passwords, verification, rehashing and the absence of a username oracle."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Literal

import argon2
import pytest
from argon2 import PasswordHasher

from edgeward.auth.users import (
    DEFAULT_MEMORY_COST,
    DEFAULT_PARALLELISM,
    DEFAULT_TIME_COST,
    MAX_PASSWORD_BYTES,
    MAX_USERNAME_CHARS,
    InvalidPasswordError,
    InvalidUsernameError,
    UnknownUserError,
    UserExistsError,
    UserInfo,
    UserStore,
    default_hasher,
    normalize_username,
    prepare_password,
    username_key,
)
from edgeward.state.sqlite import StateStore

from .conftest import FakeClock, cheap_hasher


def stored_hash(state: StateStore, key: str) -> str:
    row = state.run(lambda c: c.execute("SELECT hash FROM users WHERE name = ?", (key,)).fetchone())
    assert row is not None
    return str(row[0])


# -- names and passwords ----------------------------------------------------------------------


def test_username_key_folds_case_and_compatibility_forms() -> None:
    assert username_key("Alice") == username_key("ALICE") == "alice"
    assert username_key("Straße") == username_key("STRASSE")
    assert username_key("ｂｏｂ") == "bob"  # full-width forms (NFKC)
    assert normalize_username("ﬀ") == "ff"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a\x00b",
        "a\nb",
        "a\x1bb",
        "a\u202eb",
        "a\u200bb",
        " alice",
        "alice ",
        "x" * (MAX_USERNAME_CHARS + 1),
    ],
)
def test_bad_user_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidUsernameError):
        username_key(name)


def test_longest_user_name_is_accepted() -> None:
    assert username_key("x" * MAX_USERNAME_CHARS) == "x" * MAX_USERNAME_CHARS


def test_password_preparation() -> None:
    assert prepare_password("pässword") == "pässword".encode()
    # SASLprep-lite: non-ASCII space to U+0020, soft hyphen removed, NFKC.
    assert prepare_password("a\u00a0b\u00adc\ufb01") == b"a bcfi"
    assert prepare_password(b"bytes ok") == b"bytes ok"
    assert prepare_password("x" * MAX_PASSWORD_BYTES) == b"x" * MAX_PASSWORD_BYTES


@pytest.mark.parametrize("password", ["", "a\x00b", "x" * (MAX_PASSWORD_BYTES + 1), "é" * 513, b"\xff\xfe"])
def test_bad_passwords_are_refused(password: str | bytes) -> None:
    with pytest.raises(InvalidPasswordError):
        prepare_password(password)


# -- administration ---------------------------------------------------------------------------


async def test_add_and_verify(users: UserStore, clock: FakeClock) -> None:
    info = users.add("Alice", "correct horse")
    assert info == UserInfo("alice", False, clock.now(), clock.now())
    assert await users.verify("alice", "correct horse")
    assert await users.verify("ALICE", "correct horse")
    assert not await users.verify("alice", "wrong horse")
    assert not await users.verify("alice", "Correct horse")


async def test_verify_applies_the_same_password_preparation(users: UserStore) -> None:
    users.add("alice", "caf\u00e9")  # composed
    assert await users.verify("alice", "cafe\u0301")  # decomposed: equal after NFKC
    assert await users.verify("alice", "caf\u00e9".encode())


async def test_unknown_user_is_refused(users: UserStore) -> None:
    users.add("alice", "pw-alice")
    assert not await users.verify("bob", "pw-alice")


async def test_disabled_user_is_refused_until_enabled(users: UserStore) -> None:
    users.add("alice", "pw")
    users.disable("ALICE")
    assert users.list()[0].disabled
    assert not await users.verify("alice", "pw")
    users.enable("alice")
    assert await users.verify("alice", "pw")


async def test_bad_input_to_verify_is_a_plain_refusal(users: UserStore) -> None:
    users.add("alice", "pw")
    assert not await users.verify("", "pw")
    assert not await users.verify("ali\x00ce", "pw")
    assert not await users.verify("alice", "")
    assert not await users.verify("alice", "p\x00w")
    assert not await users.verify("alice", b"\xff")


def test_names_differing_only_in_case_are_one_account(users: UserStore) -> None:
    users.add("Alice", "pw")
    with pytest.raises(UserExistsError):
        users.add("ALICE", "pw2")
    with pytest.raises(UserExistsError):
        users.add("alice", "pw2")
    users.remove("aLiCe")
    assert users.list() == []


def test_unknown_users_cannot_be_changed(users: UserStore) -> None:
    for action in (users.remove, users.disable, users.enable):
        with pytest.raises(UnknownUserError):
            action("ghost")
    with pytest.raises(UnknownUserError):
        users.set_password("ghost", "pw")


async def test_set_password_replaces_the_old_one(users: UserStore, clock: FakeClock) -> None:
    users.add("alice", "old")
    clock.advance(60)
    users.set_password("Alice", "new")
    assert not await users.verify("alice", "old")
    assert await users.verify("alice", "new")
    info = users.get("alice")
    assert info is not None and info.updated == info.created + 60


def test_list_has_no_hashes(users: UserStore) -> None:
    users.add("bob", "pw")
    users.add("alice", "pw")
    found = users.list()
    assert [u.name for u in found] == ["alice", "bob"]
    assert all(not hasattr(u, "hash") for u in found)


def test_passwords_are_stored_as_argon2id(users: UserStore, state: StateStore) -> None:
    users.add("alice", "pw")
    digest = stored_hash(state, "alice")
    assert digest.startswith("$argon2id$")


def test_default_parameters_are_argon2id_t2_m19mib_p1() -> None:
    params = argon2.extract_parameters(default_hasher().hash("x"))
    assert params.type is argon2.Type.ID
    assert (params.time_cost, params.memory_cost, params.parallelism) == (
        DEFAULT_TIME_COST,
        DEFAULT_MEMORY_COST,
        DEFAULT_PARALLELISM,
    )
    assert (DEFAULT_TIME_COST, DEFAULT_MEMORY_COST, DEFAULT_PARALLELISM) == (2, 19456, 1)


# -- rehash on login --------------------------------------------------------------------------


async def test_login_rehashes_when_parameters_changed(state: StateStore, clock: FakeClock) -> None:
    old = UserStore(state, hasher=cheap_hasher(time_cost=1), clock=clock)
    old.add("alice", "pw")
    before = stored_hash(state, "alice")
    new = UserStore(state, hasher=cheap_hasher(time_cost=2), clock=clock)
    assert not await new.verify("alice", "wrong")
    assert stored_hash(state, "alice") == before  # a failure never rewrites the hash
    assert await new.verify("alice", "pw")
    after = stored_hash(state, "alice")
    assert after != before
    assert argon2.extract_parameters(after).time_cost == 2
    assert await new.verify("alice", "pw")
    assert stored_hash(state, "alice") == after  # current parameters: left alone


async def test_rehash_does_not_overwrite_a_concurrent_password_change(
    state: StateStore, clock: FakeClock
) -> None:
    UserStore(state, hasher=cheap_hasher(time_cost=1), clock=clock).add("alice", "old")
    new = UserStore(state, hasher=cheap_hasher(time_cost=2), clock=clock)
    old_hash = stored_hash(state, "alice")
    new.set_password("alice", "changed")
    changed = stored_hash(state, "alice")
    new._rehash("alice", old_hash, b"old")  # a login that verified the old hash, arriving late
    assert stored_hash(state, "alice") == changed


# -- no username oracle, by construction ------------------------------------------------------


class SpyHasher(PasswordHasher):
    """Records every hash the store verifies against."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1, type=argon2.Type.ID)
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified.append(hash if isinstance(hash, str) else hash.decode())
        return super().verify(hash, password)


@pytest.fixture
def spy() -> SpyHasher:
    return SpyHasher()


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("alice", "wrong"),  # known user, wrong password
        ("mallory", "pw"),  # unknown user
        ("dora", "pw"),  # disabled user, right password
        ("\x01bad", "pw"),  # malformed name
        ("alice", ""),  # unusable password
        ("alice", "x" * (MAX_PASSWORD_BYTES + 1)),  # oversized password
    ],
)
async def test_every_failure_costs_one_verification_with_current_parameters(
    state: StateStore, spy: SpyHasher, name: str, password: str
) -> None:
    users = UserStore(state, hasher=spy)
    users.add("alice", "pw")
    users.add("dora", "pw")
    users.disable("dora")
    assert not await users.verify(name, password)
    assert len(spy.verified) == 1
    checked = spy.verified[0]
    # The hash checked has exactly the parameters of a real account's hash, so equal cost.
    assert argon2.extract_parameters(checked) == argon2.extract_parameters(stored_hash(state, "alice"))


async def test_unknown_and_disabled_users_are_checked_against_the_dummy(
    state: StateStore, spy: SpyHasher
) -> None:
    users = UserStore(state, hasher=spy)
    users.add("dora", "pw")
    users.disable("dora")
    assert not await users.verify("mallory", "pw")
    assert not await users.verify("dora", "pw")
    real = stored_hash(state, "dora")
    assert len(spy.verified) == 2
    assert spy.verified[0] == spy.verified[1] != real  # the same dummy, never the real hash


async def test_success_costs_one_verification_too(state: StateStore, spy: SpyHasher) -> None:
    users = UserStore(state, hasher=spy)
    users.add("alice", "pw")
    assert await users.verify("alice", "pw")
    assert spy.verified == [stored_hash(state, "alice")]


async def test_corrupt_stored_hash_refuses(state: StateStore, users: UserStore) -> None:
    users.add("alice", "pw")
    state.run(lambda c: c.execute("UPDATE users SET hash = 'garbage'"), write=True)
    assert not await users.verify("alice", "pw")


def test_verify_concurrency_must_be_positive(state: StateStore) -> None:
    with pytest.raises(ValueError, match="max_concurrent_verifies"):
        UserStore(state, max_concurrent_verifies=0)


async def test_verify_with_the_default_hasher(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.db") as state:
        users = UserStore(state)
        users.add("alice", "pw")
        assert await users.verify("alice", "pw")
        assert not await users.verify("nobody", "pw")


class SlowHasher(PasswordHasher):
    """Counts how many verifications run at the same time."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1, type=argon2.Type.ID)
        self.active = 0
        self.most = 0
        self.lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            time.sleep(0.01)  # give other threads the chance to overlap
            return super().verify(hash, password)
        finally:
            with self.lock:
                self.active -= 1


async def test_concurrent_verifications_are_bounded(state: StateStore) -> None:
    hasher = SlowHasher()
    users = UserStore(state, hasher=hasher, max_concurrent_verifies=2)
    users.add("alice", "pw")
    results = await asyncio.gather(*(users.verify("alice", "pw" if i % 2 else "no") for i in range(10)))
    assert results == [bool(i % 2) for i in range(10)]
    assert 1 <= hasher.most <= 2
