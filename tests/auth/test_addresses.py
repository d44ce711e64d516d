"""Which sender addresses an account may use after AUTH, and their table in the state store."""

from __future__ import annotations

import asyncio

import pytest

from edgeward.auth.addresses import (
    AccountAddresses,
    InvalidAddressError,
    login_addresses,
    may_send_as,
    normalize_address,
)
from edgeward.auth.users import UnknownUserError, UserError, UserStore
from edgeward.state.sqlite import StateStore
from edgeward.types import Address


def test_addresses_are_parsed_and_lower_cased() -> None:
    assert normalize_address(" Alice@Example.TEST ") == "alice@example.test"
    assert normalize_address("@Example.TEST") == "@example.test"
    assert normalize_address('"a b"@example.test') == '"a b"@example.test'


@pytest.mark.parametrize(
    "bad", ["", "alice", "alice@", "@", "a@b@c", "<a@b.test>", "@a,@b:c@d.test", "a@-x-"]
)
def test_what_is_not_an_address_is_refused(bad: str) -> None:
    with pytest.raises(InvalidAddressError):
        normalize_address(bad)


def test_a_login_that_is_an_address_owns_itself() -> None:
    assert login_addresses("Alice@Ours.test") == {"alice@ours.test"}
    assert login_addresses("alice") == frozenset()


def test_may_send_as() -> None:
    owned = {"a.smith@ours.test", "@sales.ours.test"}
    assert may_send_as("alice@ours.test", Address("Alice", "OURS.test"), ())
    assert may_send_as("alice", Address("a.smith", "ours.test"), owned)
    assert may_send_as("alice", Address("anyone", "sales.ours.test"), owned)
    assert not may_send_as("alice", Address("ceo", "ours.test"), owned)
    assert not may_send_as("alice", Address("alice", "ours.test"), owned)  # the name is no address
    assert not may_send_as("alice@ours.test", Address.null(), owned)
    assert not may_send_as("alice", Address("x", "sub.sales.ours.test"), owned)


def test_addresses_are_stored_per_account_and_go_with_it(users: UserStore, state: StateStore) -> None:
    users.add("alice", "pw")
    users.add("bob", "pw")
    addresses = AccountAddresses(state)
    assert addresses.add("ALICE", "A.Smith@Ours.test") == "a.smith@ours.test"
    addresses.add("alice", "a.smith@ours.test")  # twice is a no-op
    addresses.add("alice", "@sales.ours.test")
    addresses.add("bob", "bob@ours.test")
    assert addresses.list("alice") == ["@sales.ours.test", "a.smith@ours.test"]
    assert asyncio.run(addresses.owned("Alice")) == {"@sales.ours.test", "a.smith@ours.test"}
    addresses.remove("alice", "@sales.ours.test")
    with pytest.raises(UserError):
        addresses.remove("alice", "@sales.ours.test")
    users.remove("alice")
    users.add("alice", "pw")  # a new account with the old name inherits nothing
    assert addresses.list("alice") == [] and addresses.list("bob") == ["bob@ours.test"]


def test_addresses_need_an_account(state: StateStore) -> None:
    with pytest.raises(UnknownUserError):
        AccountAddresses(state).add("ghost", "g@ours.test")
    assert asyncio.run(AccountAddresses(state).owned("bad\x00name")) == frozenset()
