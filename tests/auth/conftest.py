"""Fixtures for the auth tests: a state database in a temporary folder, a cheap hasher, a clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher, Type

from edgeward.auth.users import UserStore
from edgeward.state.sqlite import StateStore
from edgeward.testing.clock import FakeClock


def cheap_hasher(time_cost: int = 1, memory_cost: int = 8) -> PasswordHasher:
    """argon2id at its minimum cost, so the tests stay fast; the default is tested separately."""
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=1, type=Type.ID)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "state" / "edgeward.db"


@pytest.fixture
def state(db_path: Path) -> Iterator[StateStore]:
    with StateStore(db_path) as store:
        yield store


@pytest.fixture
def users(state: StateStore, clock: FakeClock) -> UserStore:
    return UserStore(state, hasher=cheap_hasher(), clock=clock)
