"""Failed-AUTH throttling with a fake clock: window, lockout, tarpit, grouping and memory bounds."""

from __future__ import annotations

import pytest

from edgeward.auth.sasl import AUTH_INVALID
from edgeward.auth.throttle import (
    AUTH_LOCKED_OUT,
    AUTH_TOO_MANY_FAILURES,
    FailureLedger,
    FailureVerdict,
    Throttle,
    source_key,
)
from edgeward.ports import Clock

from .conftest import FakeClock

IP = "192.0.2.7"


def test_fake_clock_is_a_clock(clock: FakeClock) -> None:
    assert isinstance(clock, Clock)


def test_third_failure_tarpits_and_disconnects_with_421(clock: FakeClock) -> None:
    throttle = Throttle(clock)
    assert throttle.failed(IP) == FailureVerdict(AUTH_INVALID, 5.0, False, 1)
    assert throttle.failed(IP) == FailureVerdict(AUTH_INVALID, 5.0, False, 2)
    assert not throttle.blocked(IP)
    verdict = throttle.failed(IP)
    assert verdict == FailureVerdict(AUTH_TOO_MANY_FAILURES, 5.0, True, 3)
    assert (verdict.reply.code, verdict.reply.enhanced) == (421, "4.7.0")
    assert throttle.blocked(IP)


def test_lockout_lasts_fifteen_minutes_by_default(clock: FakeClock) -> None:
    throttle = Throttle(clock)
    for _ in range(3):
        throttle.failed(IP)
    clock.advance(15 * 60 - 1)
    assert throttle.blocked(IP)
    clock.advance(1)
    assert not throttle.blocked(IP)
    # The count started afresh: one more failure does not lock the source again.
    assert not throttle.failed(IP).disconnect


def test_lockout_and_limits_are_settable(clock: FakeClock) -> None:
    throttle = Throttle(clock, max_failures=2, lockout=60, auth_tarpit=1.5)
    assert throttle.failed(IP).tarpit == 1.5
    assert throttle.failed(IP).disconnect
    clock.advance(59)
    assert throttle.blocked(IP)
    clock.advance(1)
    assert not throttle.blocked(IP)


def test_failures_slide_out_of_the_window(clock: FakeClock) -> None:
    throttle = Throttle(clock, window=600)
    throttle.failed(IP)
    clock.advance(300)
    throttle.failed(IP)
    clock.advance(300)  # the first failure is now 600 s old: outside
    assert throttle.failures(IP) == 1
    assert not throttle.failed(IP).disconnect
    assert throttle.failed(IP).disconnect  # failures at 300, 600, 600


def test_success_forgets_failures(clock: FakeClock) -> None:
    throttle = Throttle(clock)
    throttle.failed(IP)
    throttle.failed(IP)
    throttle.succeeded(IP)
    assert throttle.failures(IP) == 0
    assert not throttle.failed(IP).disconnect


def test_success_can_be_told_not_to_forget(clock: FakeClock) -> None:
    throttle = Throttle(clock, reset_on_success=False)
    throttle.failed(IP)
    throttle.failed(IP)
    throttle.succeeded(IP)
    assert throttle.failed(IP).disconnect


def test_sources_are_counted_apart(clock: FakeClock) -> None:
    throttle = Throttle(clock)
    for _ in range(3):
        throttle.failed(IP)
    assert throttle.blocked(IP)
    assert not throttle.blocked("192.0.2.8")
    assert throttle.failures("192.0.2.8") == 0


def test_ipv6_is_grouped_by_slash_64(clock: FakeClock) -> None:
    throttle = Throttle(clock)
    throttle.failed("2001:db8:1:2::1")
    throttle.failed("2001:db8:1:2::ffff")
    throttle.failed("2001:db8:1:2:aaaa:bbbb:cccc:dddd")
    assert throttle.blocked("2001:db8:1:2::42")
    assert not throttle.blocked("2001:db8:1:3::1")


def test_source_keys() -> None:
    assert source_key("192.0.2.1") == "192.0.2.1"
    assert source_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert source_key("2001:db8::1") == "2001:db8::/64"
    assert source_key("2001:db8::1", 128) == "2001:db8::1/128"
    assert source_key("not-an-ip") == "not-an-ip"


def test_locked_out_reply_is_454_4_7_0() -> None:
    assert (AUTH_LOCKED_OUT.code, AUTH_LOCKED_OUT.enhanced) == (454, "4.7.0")


def test_memory_is_bounded_and_the_oldest_are_evicted(clock: FakeClock) -> None:
    throttle = Throttle(clock, max_tracked=100)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
        clock.advance(0.01)
    assert len(throttle) <= 100
    assert throttle.failures("10.0.0.0") == 0  # the first ones were evicted
    assert throttle.failures("10.0.3.231") == 1  # the last one is kept


def test_a_flood_of_failures_does_not_evict_lockouts(clock: FakeClock) -> None:
    throttle = Throttle(clock, max_tracked=10)
    for _ in range(3):
        throttle.failed(IP)
    for i in range(100):
        throttle.failed(f"10.0.0.{i}")
    assert throttle.blocked(IP)


def test_lockouts_are_bounded_too(clock: FakeClock) -> None:
    throttle = Throttle(clock, max_failures=1, max_tracked=10)
    for i in range(50):
        throttle.failed(f"10.0.0.{i}")
    assert len(throttle) <= 10
    assert not throttle.blocked("10.0.0.0")
    assert throttle.blocked("10.0.0.49")


def test_expired_entries_are_dropped(clock: FakeClock) -> None:
    throttle = Throttle(clock, max_failures=1, lockout=10, window=10)
    throttle.failed("10.0.0.1")
    throttle.failed("10.0.0.2")
    clock.advance(11)
    throttle.failed("10.0.0.3")
    throttle.failed("10.0.0.4")
    assert len(throttle) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_failures": 0},
        {"window": 0},
        {"lockout": -1},
        {"auth_tarpit": -1},
        {"max_tracked": 0},
        {"ipv6_prefix": 129},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Throttle(**kwargs)  # type: ignore[arg-type]


# -- per account -----------------------------------------------------------------------------


def test_guesses_spread_over_many_sources_lock_the_account(clock: FakeClock) -> None:
    throttle = Throttle(clock, max_failures=3, max_account_failures=5)
    for i in range(5):
        verdict = throttle.failed(f"198.51.100.{i}", "Alice")
        # Each source failed once: no source is locked and no connection is closed ...
        assert verdict == FailureVerdict(AUTH_INVALID, 5.0, False, 1)
    # ... but the account is, from every address, under any spelling of its name.
    assert throttle.account_blocked("alice") and throttle.account_blocked("ALICE")
    assert not throttle.account_blocked("bob")
    assert not any(throttle.blocked(f"198.51.100.{i}") for i in range(5))
    clock.advance(900)
    assert not throttle.account_blocked("alice")


def test_attempts_during_an_account_lockout_do_not_extend_it(clock: FakeClock) -> None:
    throttle = Throttle(clock, max_failures=100, max_account_failures=2, lockout=60)
    throttle.failed(IP, "alice")
    throttle.failed(IP, "alice")
    clock.advance(59)
    throttle.failed(IP, "alice")
    clock.advance(1)
    assert not throttle.account_blocked("alice")


def test_users_behind_one_address_do_not_lock_each_other_out(clock: FakeClock) -> None:
    # The connector defaults: 10 per source, 5 per account.
    throttle = Throttle(clock, max_failures=10, max_account_failures=5)
    for _ in range(5):
        throttle.failed(IP, "alice")  # alice mistypes five times and locks only herself
    assert throttle.account_blocked("alice")
    assert not throttle.blocked(IP) and not throttle.account_blocked("bob")
    throttle.succeeded(IP, "bob")
    assert throttle.failures(IP) == 0


def test_the_source_limit_still_applies_across_accounts(clock: FakeClock) -> None:
    throttle = Throttle(clock, max_failures=4, max_account_failures=5)
    verdicts = [throttle.failed(IP, f"user{i}") for i in range(4)]
    assert [v.disconnect for v in verdicts] == [False, False, False, True]
    assert throttle.blocked(IP)
    assert throttle.failed(IP, "user9").disconnect  # a source already locked is closed again


def test_unknown_and_malformed_names_are_counted_like_real_ones(clock: FakeClock) -> None:
    throttle = Throttle(clock, max_failures=100, max_account_failures=2)
    for name in ("nobody", "bad\u200bname", " "):
        throttle.failed(IP, name)
        throttle.failed(IP, name)
        assert throttle.account_blocked(name)
    assert throttle.account_failures("someone-else") == 0


def test_account_memory_is_bounded(clock: FakeClock) -> None:
    throttle = Throttle(clock, max_failures=10**6, max_account_failures=1, max_tracked=50)
    for i in range(500):
        throttle.failed(IP, f"user{i}")
    assert len(throttle) <= 50 + 1  # the accounts' lockouts plus the one source


def test_connectors_can_share_one_account_ledger(clock: FakeClock) -> None:
    accounts = FailureLedger(clock, limit=3, window=900, lockout=900, max_tracked=100)
    port25 = Throttle(clock, max_failures=10, accounts=accounts)
    port587 = Throttle(clock, max_failures=10, accounts=accounts)
    port25.failed(IP, "alice")
    port587.failed(IP, "alice")
    assert not port25.account_blocked("alice")
    port587.failed("198.51.100.1", "alice")
    assert port25.account_blocked("alice") and port587.account_blocked("alice")
