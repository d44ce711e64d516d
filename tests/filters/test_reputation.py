"""Sender reputation against the shipped fakes: HELO and reverse DNS, no rating below 20
messages, the SRL from the SCL history and protocol findings, the block and its expiry."""

from __future__ import annotations

import pytest

from edgeward.config.schema import ReceiveConnectorConfig, ReputationConfig
from edgeward.filters.agents.reputation import BLOCKED, SenderReputation, helo_findings, rating
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.verdict import Verdict
from edgeward.testing.clock import FakeClock
from edgeward.testing.dns import FakeResolver
from edgeward.testing.policystore import MemoryPolicyStore
from edgeward.types import Action, Address, Finding, Peer

CONNECTOR = ReceiveConnectorConfig(name="internet")
IP = "192.0.2.10"
PTR = ("10.2.0.192.in-addr.arpa", "PTR")


def info(ip: str = IP, helo: str = "") -> SessionInfo:
    return SessionInfo("S1", Peer(ip, 4000), CONNECTOR, helo=helo)


def verdict(*names: str, total: float = 0.0, exempt: str = "") -> Verdict:
    findings = tuple(Finding(n, "x") for n in names)
    return Verdict(Action.CONTINUE, None, findings, (), total, "test", exempt)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryPolicyStore:
    return MemoryPolicyStore(clock)


def agent(store: MemoryPolicyStore, dns: FakeResolver | None = None) -> SenderReputation:
    return SenderReputation(
        store, dns or FakeResolver(), ReputationConfig(), own_names=("mx.example.test", "example.test")
    )


@pytest.mark.parametrize(
    ("helo", "expected"),
    [
        ("mail.remote.test", []),
        (f"[{IP}]", []),
        ("[198.51.100.1]", ["HELO_LITERAL_MISMATCH"]),
        ("[not-an-ip]", ["HELO_INVALID"]),
        ("localhost", ["HELO_INVALID"]),
        ("192.0.2.10", ["HELO_INVALID"]),
        ("MX.Example.Test.", ["HELO_FORGED"]),
        ("example.test", ["HELO_FORGED"]),
    ],
)
def test_helo_analysis(helo: str, expected: list[str]) -> None:
    assert [f.name for f in helo_findings(helo, IP, {"mx.example.test", "example.test"}, "rep")] == expected


@pytest.mark.parametrize(
    ("records", "failing", "expected"),
    [
        ({PTR: ["mail.remote.test"], ("mail.remote.test", "A"): [IP]}, "", []),
        ({PTR: ["mail.remote.test"], ("mail.remote.test", "A"): ["192.0.2.99"]},
         "", ["RDNS_UNCONFIRMED"]),
        ({PTR: ["gone.remote.test"], ("remote.test", "A"): ["192.0.2.1"]},
         "", ["RDNS_UNCONFIRMED"]),
        ({("192.0.2.in-addr.arpa", "NS"): ["ns.test"]}, "", ["RDNS_NONE"]),
        ({}, "10.2.0.192.in-addr.arpa", ["RDNS_TEMPERROR"]),
    ],
)  # fmt: skip
async def test_reverse_dns_and_forward_confirmation(
    store: MemoryPolicyStore, records: dict[tuple[str, str], list[str]], failing: str, expected: list[str]
) -> None:
    dns = FakeResolver(records, failures=[failing] if failing else [])
    outcome = await agent(store, dns).check(Stage.CONNECT, StageContext(Stage.CONNECT, info()))
    assert [f.name for f in outcome.findings] == expected
    assert outcome.action is Action.CONTINUE


def test_rating_weighs_scl_history_helo_rdns_and_protocol() -> None:
    assert rating(20, 0, 0, 0, 0) == 0
    assert rating(20, 20 * 9, 0, 0, 0) == 5
    assert rating(20, 20 * 9, 0, 20, 0) == 7
    assert rating(20, 20 * 2, 20, 20, 60) == 8
    assert rating(20, 20 * 9, 20, 20, 100) == 9


async def test_no_rating_below_20_messages_then_a_block_for_24_hours(
    store: MemoryPolicyStore, clock: FakeClock
) -> None:
    rep = agent(store)
    ctx = StageContext(Stage.EOD, info(), mail_from=Address("a", "remote.test"))
    rcpt = StageContext(Stage.RCPT, info(), recipient=Address("user", "example.test"))
    for _ in range(19):
        await rep.learned(ctx, verdict("SCL_9", "RDNS_NONE"))
    assert await store.get(f"rep:srl:{IP}") is None
    assert (await rep.check(Stage.RCPT, rcpt)).action is Action.CONTINUE
    await rep.learned(ctx, verdict("SCL_9", "RDNS_NONE"))
    assert await store.get(f"rep:srl:{IP}") == "7"
    blocked = await rep.check(Stage.RCPT, rcpt)
    assert (blocked.action, blocked.reply) == (Action.REJECT, BLOCKED)
    assert [(f.name, f.detail) for f in blocked.findings] == [
        ("REPUTATION_BLOCKED", "SRL 7 over 20 messages")
    ]
    # A rated client carries its SRL from CONNECT on, as a finding and a stamp.
    connect = await rep.check(Stage.CONNECT, StageContext(Stage.CONNECT, info()))
    assert "SRL_7" in [f.name for f in connect.findings] and connect.headers == (("X-Edgeward-SRL", "7"),)
    clock.advance(86400)
    assert (await rep.check(Stage.RCPT, rcpt)).action is Action.CONTINUE


async def test_good_mail_rates_low_and_is_not_blocked(store: MemoryPolicyStore) -> None:
    rep = agent(store)
    ctx = StageContext(Stage.EOD, info())
    for _ in range(25):
        # Without a classifier finding the verdict's total stands in for the SCL.
        await rep.learned(ctx, verdict(total=1.2))
    assert await store.get(f"rep:srl:{IP}") == "1"
    assert await store.get(f"rep:block:{IP}") is None


async def test_exempt_and_authenticated_mail_teaches_nothing(store: MemoryPolicyStore) -> None:
    rep = agent(store)
    await rep.learned(StageContext(Stage.EOD, info()), verdict("SCL_9", exempt="client on the IP allow list"))
    authed = SessionInfo("S2", Peer(IP, 1), CONNECTOR, authenticated="u@example.test")
    await rep.learned(StageContext(Stage.EOD, authed), verdict("SCL_9"))
    assert await store.scan("rep:") == []


async def test_a_broken_store_is_a_temperror_never_a_block(store: MemoryPolicyStore) -> None:
    rep = agent(store)
    store.break_down()
    outcome = await rep.check(
        Stage.RCPT, StageContext(Stage.RCPT, info(), recipient=Address("u", "example.test"))
    )
    assert outcome.action is Action.CONTINUE and [f.name for f in outcome.findings] == [
        "REPUTATION_TEMPERROR"
    ]
    await rep.learned(StageContext(Stage.EOD, info()), verdict("SCL_9"))  # logged, not raised


async def test_a_client_on_this_host_is_not_asked_about(store: MemoryPolicyStore) -> None:
    dns = FakeResolver()
    outcome = await agent(store, dns).check(Stage.CONNECT, StageContext(Stage.CONNECT, info("127.0.0.2")))
    assert outcome.findings == () and dns.queries == []
