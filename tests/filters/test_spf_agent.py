"""The SPF agent at MAIL against the DNS fake: findings, Received-SPF, and the settable actions."""

from __future__ import annotations

import pytest

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.filters.agents.spf import SpfAgent, spf_from_findings
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.testing.dns import FakeResolver
from edgeward.types import Action, Address, Finding, Outcome, Peer

RECORDS = {
    ("example.com", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all"],
    ("soft.example", "TXT"): ["v=spf1 ~all"],
    ("broken.example", "TXT"): ["v=spf1 ip4:192.0.2.0/33 -all"],
    ("mx.example.com", "TXT"): ["v=spf1 ip4:192.0.2.1 -all"],
}


def ctx(
    sender: Address, ip: str = "192.0.2.1", helo: str = "mx.example.com", *, auth: str = ""
) -> StageContext:
    connector = ReceiveConnectorConfig(name="internet")
    info = SessionInfo("s1", Peer(ip, 1234), connector, helo=helo, authenticated=auth)
    return StageContext(Stage.MAIL, info, mail_from=sender)


def dns() -> FakeResolver:
    resolver = FakeResolver(RECORDS)
    resolver.time_out("slow.example")
    return resolver


async def run(agent: SpfAgent, c: StageContext) -> Outcome:
    return await agent.check(Stage.MAIL, c)


@pytest.mark.parametrize(
    ("sender", "ip", "name"),
    [
        ("alice@example.com", "192.0.2.1", "SPF_PASS"),
        ("alice@example.com", "198.51.100.7", "SPF_FAIL"),
        ("bob@soft.example", "192.0.2.1", "SPF_SOFTFAIL"),
        ("bob@broken.example", "192.0.2.1", "SPF_PERMERROR"),
        ("bob@nothing.example", "192.0.2.1", "SPF_NONE"),
        ("bob@slow.example", "192.0.2.1", "SPF_TEMPERROR"),
    ],
)
async def test_each_result_is_a_finding_and_a_received_spf_stamp(sender: str, ip: str, name: str) -> None:
    local, _, domain = sender.partition("@")
    outcome = await run(SpfAgent(dns(), "gw.example.net", time_limit=5), ctx(Address(local, domain), ip))
    assert outcome.action is Action.CONTINUE
    [finding] = outcome.findings
    assert finding.name == name and finding.agent == "spf"
    [(field, value)] = outcome.headers
    assert field == "Received-SPF"
    assert value.split()[0].lower() == name.removeprefix("SPF_").lower()
    assert f"client-ip={ip};" in value and "receiver=gw.example.net;" in value
    seen = spf_from_findings(outcome.findings)
    assert seen is not None and seen.domain == domain and seen.identity == "mailfrom"
    assert seen.result == name.removeprefix("SPF_").lower()


async def test_null_sender_checks_the_helo_identity() -> None:
    outcome = await run(SpfAgent(dns(), "gw"), ctx(Address.null(), "192.0.2.1", "mx.example.com"))
    [finding] = outcome.findings
    assert finding.name == "SPF_PASS"
    seen = spf_from_findings(outcome.findings)
    assert seen is not None and (seen.identity, seen.domain) == ("helo", "mx.example.com")


async def test_fail_rejects_only_when_configured() -> None:
    agent = SpfAgent(dns(), "gw", fail_action="reject")
    outcome = await run(agent, ctx(Address("alice", "example.com"), "198.51.100.7"))
    assert outcome.action is Action.REJECT and outcome.reply is not None
    assert (outcome.reply.code, outcome.reply.enhanced) == (550, "5.7.23")
    # A softfail is never refused, whatever fail_action says.
    soft = await run(agent, ctx(Address("bob", "soft.example")))
    assert soft.action is Action.CONTINUE


async def test_temperror_stamps_by_default_and_tempfails_when_configured() -> None:
    sender = Address("bob", "slow.example")
    stamped = await run(SpfAgent(dns(), "gw", time_limit=5), ctx(sender))
    assert stamped.action is Action.CONTINUE and stamped.headers
    held = await run(SpfAgent(dns(), "gw", temperror_action="tempfail", time_limit=5), ctx(sender))
    assert held.action is Action.TEMPFAIL and held.reply is not None
    assert (held.reply.code, held.reply.enhanced) == (451, "4.4.3")


async def test_authenticated_sessions_are_not_checked() -> None:
    resolver = dns()
    outcome = await run(
        SpfAgent(resolver, "gw"), ctx(Address("alice", "example.com"), "198.51.100.7", auth="alice")
    )
    assert outcome.findings == () and resolver.queries == []


def test_spf_from_findings_ignores_other_agents() -> None:
    assert spf_from_findings([Finding("SPF_PASS", "someone-else", "mailfrom=x.example pass")]) is None
    assert spf_from_findings([]) is None


async def test_a_helo_with_white_space_cannot_confuse_the_result_read_back() -> None:
    outcome = await run(SpfAgent(dns(), "gw"), ctx(Address.null(), "192.0.2.1", "pass mx.example.com"))
    seen = spf_from_findings(outcome.findings)
    [finding] = outcome.findings
    assert seen is not None and seen.result == finding.name.removeprefix("SPF_").lower()
    assert seen.domain == "passmx.example.com" and seen.result != "pass"
