"""Greylisting against the shipped fakes: the retry window, expiry, auto-allow and every skip."""

from __future__ import annotations

import logging

import pytest

from edgeward.config.schema import GreylistConfig, ReceiveConnectorConfig
from edgeward.filters.agents.greylist import GREYLISTED, Greylisting, network
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.testing.clock import FakeClock
from edgeward.testing.policystore import MemoryPolicyStore
from edgeward.types import Action, Address, Finding, Outcome, Peer

CONNECTOR = ReceiveConnectorConfig(name="internet")
SENDER = Address("alerts", "bank.test")
RCPT = Address("user", "example.test")


def ctx(
    ip: str = "192.0.2.10", *, rcpt: Address = RCPT, authenticated: str = "", found: tuple[str, ...] = ()
) -> StageContext:
    info = SessionInfo("S1", Peer(ip, 4000), CONNECTOR, authenticated=authenticated)
    findings = tuple(Finding(name, "other") for name in found)
    return StageContext(Stage.RCPT, info, mail_from=SENDER, recipient=rcpt, earlier=findings)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryPolicyStore:
    return MemoryPolicyStore(clock)


def agent(store: MemoryPolicyStore, clock: FakeClock, **settings: object) -> Greylisting:
    return Greylisting(store, clock, GreylistConfig.model_validate({"enabled": True, **settings}))


def names(outcome: Outcome) -> list[str]:
    return [f.name for f in outcome.findings]


def test_networks_are_ipv4_24_and_ipv6_64() -> None:
    assert network("192.0.2.77") == "192.0.2.0/24"
    assert network("::ffff:192.0.2.77") == "192.0.2.0/24"
    assert network("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"


async def test_first_sight_is_deferred_and_a_retry_in_the_window_passes(
    store: MemoryPolicyStore, clock: FakeClock
) -> None:
    grey = agent(store, clock)
    first = await grey.check(Stage.RCPT, ctx())
    assert (first.action, first.reply) == (Action.TEMPFAIL, GREYLISTED)
    assert str(GREYLISTED).startswith("451 4.7.1")
    clock.advance(299)
    early = await grey.check(Stage.RCPT, ctx())
    assert early.action is Action.TEMPFAIL and "retry after 299s" in early.findings[0].detail
    clock.advance(1)
    # A neighbour in the same /24 retries: the sending farm is one client.
    retry = await grey.check(Stage.RCPT, ctx("192.0.2.200"))
    assert retry.action is Action.CONTINUE and names(retry) == ["GREYLIST_PASSED"]
    # Known now: later messages of the triplet pass at once, long after the first window.
    clock.advance(10 * 86400)
    assert (await grey.check(Stage.RCPT, ctx())).action is Action.CONTINUE


async def test_each_recipient_and_each_network_is_its_own_triplet(
    store: MemoryPolicyStore, clock: FakeClock
) -> None:
    grey = agent(store, clock)
    await grey.check(Stage.RCPT, ctx())
    clock.advance(600)
    assert (await grey.check(Stage.RCPT, ctx())).action is Action.CONTINUE
    assert (
        await grey.check(Stage.RCPT, ctx(rcpt=Address("other", "example.test")))
    ).action is Action.TEMPFAIL
    assert (await grey.check(Stage.RCPT, ctx("198.51.100.1"))).action is Action.TEMPFAIL


async def test_a_retry_after_the_maximum_delay_starts_over(
    store: MemoryPolicyStore, clock: FakeClock
) -> None:
    grey = agent(store, clock)
    await grey.check(Stage.RCPT, ctx())
    clock.advance(86400)
    late = await grey.check(Stage.RCPT, ctx())
    assert late.action is Action.TEMPFAIL and late.findings[0].detail.startswith("new ")
    clock.advance(300)
    assert (await grey.check(Stage.RCPT, ctx())).action is Action.CONTINUE


async def test_a_network_is_auto_allowed_after_repeated_passes(
    store: MemoryPolicyStore, clock: FakeClock
) -> None:
    grey = agent(store, clock, auto_allow_after=2)
    for local in ("a", "b"):
        rcpt = Address(local, "example.test")
        await grey.check(Stage.RCPT, ctx(rcpt=rcpt))
        clock.advance(300)
        assert (await grey.check(Stage.RCPT, ctx(rcpt=rcpt))).action is Action.CONTINUE
    fresh = await grey.check(Stage.RCPT, ctx(rcpt=Address("new", "example.test")))
    assert fresh.action is Action.CONTINUE
    assert [(f.name, f.detail) for f in fresh.findings] == [
        ("GREYLIST_SKIPPED", "network 192.0.2.0/24 auto-allowed")
    ]
    clock.advance(36 * 86400)
    assert (await grey.check(Stage.RCPT, ctx(rcpt=Address("new2", "example.test")))).action is Action.TEMPFAIL


@pytest.mark.parametrize(
    ("authenticated", "found", "reason"),
    [
        ("user@example.test", (), "authenticated session"),
        ("", ("DNSWL_LISTED",), "client on a DNS allow list"),
        ("", ("SPF_PASS", "SRL_2"), "SPF pass and good reputation (SRL 2)"),
    ],
)
async def test_skips_are_findings_with_their_reason_and_are_logged(
    store: MemoryPolicyStore, clock: FakeClock, caplog: pytest.LogCaptureFixture,
    authenticated: str, found: tuple[str, ...], reason: str,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, "edgeward.greylist")
    outcome = await agent(store, clock).check(Stage.RCPT, ctx(authenticated=authenticated, found=found))
    assert outcome.action is Action.CONTINUE
    assert [(f.name, f.detail) for f in outcome.findings] == [("GREYLIST_SKIPPED", reason)]
    assert reason in caplog.text
    assert await store.scan("grey:") == []


@pytest.mark.parametrize("found", [("SPF_PASS",), ("SPF_PASS", "SRL_4"), ("SRL_0",)])
async def test_spf_pass_alone_or_without_good_reputation_is_greylisted(
    store: MemoryPolicyStore, clock: FakeClock, found: tuple[str, ...]
) -> None:
    assert (await agent(store, clock).check(Stage.RCPT, ctx(found=found))).action is Action.TEMPFAIL


async def test_a_broken_store_lets_the_recipient_through_with_a_temperror(
    store: MemoryPolicyStore, clock: FakeClock
) -> None:
    store.break_down()
    outcome = await agent(store, clock).check(Stage.RCPT, ctx())
    assert outcome.action is Action.CONTINUE and names(outcome) == ["GREYLIST_TEMPERROR"]
