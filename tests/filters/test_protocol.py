"""Protocol analysis: which client events are signals, the findings they give, and the tarpit
that grows with them."""

from __future__ import annotations

import pytest

from edgeward.config.schema import Config, ProtocolAnalysisConfig, ReceiveConnectorConfig
from edgeward.filters.agents.protocol import ProtocolAnalysis
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.signals import ProtocolSignals, signals_of
from edgeward.runtime_policy import build_policy
from edgeward.smtp import events as ev
from edgeward.smtp import replies as r
from edgeward.types import Address, Peer, Reply

CONNECTOR = ReceiveConnectorConfig(name="internet", tarpit_interval=5)
MAIL = ev.MailFrom(Address("a", "remote.test"), ())


@pytest.mark.parametrize(
    ("event", "buffered", "esmtp", "expected"),
    [
        (MAIL, 0, False, ()),
        (MAIL, 30, False, ("pipelining",)),  # HELO offers no PIPELINING
        (MAIL, 30, True, ()),  # EHLO offered it
        (ev.Helo("client.test", esmtp=True), 12, False, ("pipelining",)),  # EHLO must end a group
        (ev.Data(), 200, True, ("pipelining",)),  # the message before 354
        (ev.Quit(), 5, False, ()),
        (ev.ProtocolViolation(r.BARE_LF_IN_COMMAND), 0, True, ("bare_lf",)),
        (ev.MessageData(b"", r.BARE_LINE_ENDING), 0, True, ("bare_lf",)),
        (ev.ProtocolViolation(r.COMMAND_UNRECOGNIZED), 0, True, ("errors",)),
        (ev.Noop(), 0, True, ("junk",)),
        (ev.Rset(), 9, False, ("junk", "pipelining")),
    ],
)
def test_signals_of_client_events(
    event: object, buffered: int, esmtp: bool, expected: tuple[str, ...]
) -> None:
    assert signals_of(event, buffered, esmtp) == expected


def _ctx(stage: Stage, signals: ProtocolSignals) -> StageContext:
    return StageContext(stage, SessionInfo("S1", Peer("192.0.2.1", 1), CONNECTOR, protocol=signals))


async def test_pregreet_is_reported_at_connect_the_rest_at_end_of_data() -> None:
    agent = ProtocolAnalysis(ProtocolAnalysisConfig(errors=2, junk_commands=3))
    seen = ProtocolSignals(pregreet=1, pipelining=2, bare_lf=1, errors=2, junk=3)
    connect = await agent.check(Stage.CONNECT, _ctx(Stage.CONNECT, seen))
    assert [f.name for f in connect.findings] == ["PROTOCOL_PREGREET"]
    eod = await agent.check(Stage.EOD, _ctx(Stage.EOD, seen))
    assert [f.name for f in eod.findings] == [
        "PROTOCOL_PIPELINING", "PROTOCOL_BARE_LF", "PROTOCOL_ERRORS", "PROTOCOL_JUNK",
    ]  # fmt: skip
    below = ProtocolSignals(errors=1, junk=2)
    assert (await agent.check(Stage.EOD, _ctx(Stage.EOD, below))).findings == ()
    assert (await agent.check(Stage.CONNECT, _ctx(Stage.CONNECT, below))).findings == ()


def test_the_tarpit_grows_with_protocol_signals_up_to_its_maximum() -> None:
    policy = build_policy(Config(), [])  # tarpit_max 30 by default
    refusal = Reply(550, "5.1.1", "unknown")
    clean = SessionInfo("S1", Peer("192.0.2.1", 1), CONNECTOR)
    assert policy.tarpit(refusal, clean) == 5
    two = SessionInfo(
        "S1", Peer("192.0.2.1", 1), CONNECTOR, protocol=ProtocolSignals(pregreet=1, pipelining=1)
    )
    assert policy.tarpit(refusal, two) == 15
    many = SessionInfo("S1", Peer("192.0.2.1", 1), CONNECTOR, protocol=ProtocolSignals(errors=40))
    assert policy.tarpit(refusal, many) == 30
    assert policy.tarpit(Reply(451, "4.7.1", "later"), many) == 0
    off = build_policy(Config.model_validate({"agents": {"protocol": {"enabled": False}}}), [])
    assert off.tarpit(refusal, many) == 5


def test_junk_commands_alone_do_not_lengthen_the_tarpit() -> None:
    policy = build_policy(Config(), [])
    chatty = SessionInfo("S1", Peer("192.0.2.1", 1), CONNECTOR, protocol=ProtocolSignals(junk=12))
    assert policy.tarpit(Reply(550, "5.1.1", "unknown"), chatty) == 5
