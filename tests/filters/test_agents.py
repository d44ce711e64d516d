from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.filters.agents.limits import BackPressure, HopCount, MessageSize
from edgeward.filters.agents.recipients import LocalRecipients, read_recipients
from edgeward.filters.agents.relay import RelayControl, domain_matches
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.headers import parse_headers
from edgeward.testing.clock import FakeClock
from edgeward.types import Action, Address, Peer


def info(**kw: object) -> SessionInfo:
    connector = ReceiveConnectorConfig(name="internet", **kw)  # type: ignore[arg-type]
    return SessionInfo("s1", Peer("192.0.2.1", 1234), connector, rights=frozenset(connector.permissions))


def rcpt(address: str, **kw: object) -> StageContext:
    local, _, domain = address.rpartition("@")
    return StageContext(Stage.RCPT, info(**kw), recipient=Address(local, domain))


@pytest.mark.parametrize(
    ("domain", "patterns", "expected"),
    [
        ("example.org", {"example.org"}, True),
        ("EXAMPLE.org.", {"example.org"}, True),
        ("mail.example.org", {"*.example.org"}, True),
        ("example.org", {"*.example.org"}, False),
        ("badexample.org", {"example.org"}, False),
        ("example.org.evil.test", {"example.org"}, False),
    ],
)
def test_domain_matching(domain: str, patterns: set[str], expected: bool) -> None:
    assert domain_matches(domain, frozenset(patterns)) is expected


async def test_relay_control_accepts_accepted_domains_from_anyone() -> None:
    out = await RelayControl(["example.org"]).check(Stage.RCPT, rcpt("user@example.org"))
    assert out.action is Action.CONTINUE


@pytest.mark.parametrize(
    "address",
    [
        "user@elsewhere.test",
        "user@[192.0.2.9]",
        "user%elsewhere.test@example.org",
        "elsewhere.test!user@example.org",
        '"user@elsewhere.test"@example.org',
    ],
)
async def test_relay_control_refuses_other_domains_and_routing_tricks(address: str) -> None:
    out = await RelayControl(["example.org"]).check(Stage.RCPT, rcpt(address))
    assert out.action is Action.REJECT and out.reply is not None
    assert (out.reply.code, out.reply.enhanced) == (550, "5.7.1")


async def test_relay_permission_allows_any_domain() -> None:
    out = await RelayControl(["example.org"]).check(
        Stage.RCPT, rcpt("x@elsewhere.test", permissions=("relay",))
    )
    assert out.action is Action.CONTINUE


async def test_local_recipients(tmp_path: Path) -> None:
    listing = tmp_path / "recipients.txt"
    listing.write_text("alice@example.org  # the boss\n@sales.example.org\n\n")
    agent = LocalRecipients(["example.org", "sales.example.org"], read_recipients(listing))
    assert (await agent.check(Stage.RCPT, rcpt("Alice@Example.org"))).action is Action.CONTINUE
    assert (await agent.check(Stage.RCPT, rcpt("anyone@sales.example.org"))).action is Action.CONTINUE
    out = await agent.check(Stage.RCPT, rcpt("mallory@example.org"))
    assert out.action is Action.REJECT and out.reply is not None and out.reply.enhanced == "5.1.1"
    # Not an accepted domain: the relay agent's business.
    assert (await agent.check(Stage.RCPT, rcpt("x@elsewhere.test"))).action is Action.CONTINUE


async def test_declared_size_over_the_limit_is_refused_at_mail() -> None:
    ctx = StageContext(Stage.MAIL, info(max_message_size=1000), mail_params={"SIZE": "1001"})
    out = await MessageSize().check(Stage.MAIL, ctx)
    assert out.action is Action.REJECT and out.reply is not None and out.reply.code == 552
    ctx = StageContext(Stage.MAIL, info(max_message_size=1000), mail_params={"SIZE": "1000"})
    assert (await MessageSize().check(Stage.MAIL, ctx)).action is Action.CONTINUE


async def test_hop_count() -> None:
    data = b"".join(b"Received: from hop%d\r\n" % i for i in range(3)) + b"Subject: x\r\n\r\nbody\r\n"
    ctx = StageContext(Stage.EOD, info(max_hop_count=3), data=data, headers=parse_headers(data))
    out = await HopCount().check(Stage.EOD, ctx)
    assert out.action is Action.REJECT and out.reply is not None and out.reply.enhanced == "5.4.6"
    ctx = StageContext(Stage.EOD, info(max_hop_count=4), data=data, headers=parse_headers(data))
    assert (await HopCount().check(Stage.EOD, ctx)).action is Action.CONTINUE


async def test_back_pressure_answers_452_below_the_threshold() -> None:
    free = [10]
    agent = BackPressure(lambda: free[0], threshold=100, recheck=0)
    out = await agent.check(Stage.MAIL, StageContext(Stage.MAIL, info()))
    assert out.action is Action.TEMPFAIL and out.reply is not None
    assert (out.reply.code, out.reply.enhanced) == (452, "4.3.1")
    free[0] = 1000
    assert (await agent.check(Stage.MAIL, StageContext(Stage.MAIL, info()))).action is Action.CONTINUE


async def test_sender_authority_refuses_spoofed_accepted_domain_from_anonymous() -> None:
    from edgeward.filters.agents.sender import SenderAuthority

    agent = SenderAuthority(["example.org"])
    anonymous = StageContext(Stage.MAIL, info(), mail_from=Address("ceo", "example.org"))
    out = await agent.check(Stage.MAIL, anonymous)
    assert out.action is Action.REJECT and out.reply is not None and out.reply.enhanced == "5.7.1"
    trusted = StageContext(
        Stage.MAIL, info(permissions=("submit", "send_as_accepted")), mail_from=Address("ceo", "example.org")
    )
    assert (await agent.check(Stage.MAIL, trusted)).action is Action.CONTINUE
    bounce = StageContext(Stage.MAIL, info(), mail_from=Address.null())
    assert (await agent.check(Stage.MAIL, bounce)).action is Action.CONTINUE
    outsider = StageContext(Stage.MAIL, info(), mail_from=Address("a", "remote.test"))
    assert (await agent.check(Stage.MAIL, outsider)).action is Action.CONTINUE


async def test_message_rate_limit_per_source() -> None:
    from edgeward.filters.agents.rate import MessageRateLimit

    clock = FakeClock()
    agent = MessageRateLimit(clock=clock)
    ctx = StageContext(Stage.MAIL, info(message_rate_limit=2), mail_from=Address("a", "remote.test"))
    assert (await agent.check(Stage.MAIL, ctx)).action is Action.CONTINUE
    assert (await agent.check(Stage.MAIL, ctx)).action is Action.CONTINUE
    out = await agent.check(Stage.MAIL, ctx)
    assert out.action is Action.TEMPFAIL and out.reply is not None and out.reply.enhanced == "4.7.1"
    clock.advance(61)  # the window slides
    assert (await agent.check(Stage.MAIL, ctx)).action is Action.CONTINUE
    relay = StageContext(Stage.MAIL, info(message_rate_limit=1, permissions=("relay",)))
    for _ in range(3):
        assert (await agent.check(Stage.MAIL, relay)).action is Action.CONTINUE
