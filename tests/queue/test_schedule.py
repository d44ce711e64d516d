"""The retry schedule, expiry and delay notices: examples from the defaults, and properties."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from edgeward.config.schema import QueueConfig
from edgeward.queue import MessageRecord, RecipientRecord, RecipientStatus
from edgeward.queue.schedule import is_expired, needs_delay_notice, next_attempt, retry_interval

CFG = QueueConfig()
T0 = 1_700_000_000.0
HOUR = 3600.0


def test_default_schedule_glitch_then_doubling_then_cap() -> None:
    waits = [retry_interval(CFG, n) for n in range(0, 11)]
    assert waits == [0, 60, 60, 60, 60, 600, 1200, 2400, 3600, 3600, 3600]
    assert next_attempt(CFG, 5, T0) == T0 + 600


def test_zero_glitch_retries_starts_with_the_transient_interval() -> None:
    cfg = QueueConfig(glitch_retry_count=0)
    assert [retry_interval(cfg, n) for n in (1, 2, 3)] == [600, 1200, 2400]


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert retry_interval(CFG, 10**9) == CFG.max_retry_interval


configs = st.builds(
    QueueConfig,
    glitch_retry_count=st.integers(0, 10),
    glitch_retry_interval=st.floats(0, 10 * HOUR),
    transient_retry_interval=st.floats(0, 10 * HOUR),
    max_retry_interval=st.floats(0, 100 * HOUR),
)


@given(configs, st.integers(0, 200), st.floats(0, 4e9))
def test_schedule_is_monotone_capped_and_in_the_future(cfg: QueueConfig, attempts: int, now: float) -> None:
    wait = retry_interval(cfg, attempts)
    assert 0 <= wait <= cfg.max_retry_interval
    assert retry_interval(cfg, attempts + 1) >= wait
    assert next_attempt(cfg, attempts, now) >= now


def rec(**kw: object) -> MessageRecord:
    base = MessageRecord("01A", "a@example.org", (RecipientRecord("b@example.net"),), T0, 100)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_expiry_after_two_days() -> None:
    assert not is_expired(CFG, T0, T0 + 2 * 86400 - 1)
    assert is_expired(CFG, T0, T0 + 2 * 86400)


def test_delay_notice_after_four_hours_once() -> None:
    assert not needs_delay_notice(CFG, rec(), T0 + 4 * HOUR - 1)
    assert needs_delay_notice(CFG, rec(), T0 + 4 * HOUR)
    assert not needs_delay_notice(CFG, rec(delay_notified=True), T0 + 5 * HOUR)


def test_no_delay_notice_for_the_null_sender_or_an_expired_message() -> None:
    assert not needs_delay_notice(CFG, rec(mail_from=""), T0 + 5 * HOUR)
    assert not needs_delay_notice(CFG, rec(), T0 + 3 * 86400)


def test_delay_notice_respects_notify() -> None:
    def with_notify(*notify: str) -> MessageRecord:
        return rec(recipients=(RecipientRecord("b@example.net", notify=notify),))

    later = T0 + 5 * HOUR
    assert needs_delay_notice(CFG, with_notify(), later)  # default: delay notices are sent
    assert needs_delay_notice(CFG, with_notify("SUCCESS", "delay"), later)
    assert not needs_delay_notice(CFG, with_notify("FAILURE"), later)
    assert not needs_delay_notice(CFG, with_notify("NEVER"), later)


def test_delay_notice_only_for_recipients_still_waiting() -> None:
    done = RecipientRecord("b@example.net", status=RecipientStatus.DELIVERED)
    waiting = RecipientRecord("c@example.net", status=RecipientStatus.DEFERRED, notify=("FAILURE",))
    assert not needs_delay_notice(CFG, rec(recipients=(done, waiting)), T0 + 5 * HOUR)
    asks = RecipientRecord("d@example.net", status=RecipientStatus.DEFERRED)
    assert needs_delay_notice(CFG, rec(recipients=(done, waiting, asks)), T0 + 5 * HOUR)
