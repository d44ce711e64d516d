"""The anti-virus agent's decisions over fake engines (the real clamd: tests/e2e/test_antivirus.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edgeward.config.antivirus import AntivirusConfig
from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.filters.agents.antivirus import Antivirus
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.message import MessageView
from edgeward.headers import parse_headers
from edgeward.scanning.policy import Engine, MultiEnginePolicy
from edgeward.testing.scanner import FakeScanner
from edgeward.types import Action, Outcome, Peer
from tests.scanning.builders import message, zip_bytes

VIRUS = b"VIRUS-PATTERN"
MESSAGE = b"From: a@example.test\r\nSubject: hi\r\n\r\nbody " + VIRUS + b"\r\n"
CLEAN = b"From: a@example.test\r\nSubject: hi\r\n\r\nnothing here\r\n"


def context(data: bytes) -> StageContext:
    session = SessionInfo("s1", Peer("192.0.2.1", 1234), ReceiveConnectorConfig(name="internet"))
    return StageContext(Stage.EOD, session, data=data)


def agent(*fakes: FakeScanner, **cfg: Any) -> Antivirus:
    engines = [Engine(f, timeout=0.05 if f.delay else 5.0) for f in fakes]
    config = AntivirusConfig.model_validate({"enabled": True, **cfg})
    return Antivirus(MultiEnginePolicy(engines, config.require), config)


def check(av: Antivirus, data: bytes) -> Outcome:
    return asyncio.run(av.check(Stage.EOD, context(data)))


def test_a_virus_is_refused_naming_the_signature_and_the_part() -> None:
    outcome = check(agent(FakeScanner({VIRUS: "Test.Virus"}, name="clamd")), MESSAGE)
    assert outcome.action is Action.REJECT and outcome.reply is not None
    assert str(outcome.reply).startswith("550 5.7.1 Virus found: Test.Virus (message)")
    (finding,) = outcome.findings
    assert finding.name == "AV_INFECTED" and finding.agent == "antivirus"
    assert finding.detail == "engine=clamd signature=Test.Virus path=message"


def test_clean_mail_goes_on_without_findings() -> None:
    outcome = check(agent(FakeScanner({VIRUS: "Test.Virus"})), CLEAN)
    assert outcome.action is Action.CONTINUE and outcome.findings == ()


def test_scanned_mail_is_stamped_with_the_engines_that_answered() -> None:
    down = FakeScanner(name="yara")
    down.down = True
    outcome = check(agent(FakeScanner(name="clamd"), down, require="any"), CLEAN)
    assert outcome.action is Action.CONTINUE
    assert outcome.headers == (("X-Edgeward-AV", "scanned by clamd"),)
    (finding,) = outcome.findings
    assert finding.name == "AV_UNAVAILABLE"


@pytest.mark.parametrize(
    ("action", "expected"), [("quarantine", Action.QUARANTINE), ("discard", Action.DISCARD)]
)
def test_the_infection_action_is_settable(action: str, expected: Action) -> None:
    outcome = check(agent(FakeScanner({VIRUS: "Test.Virus"}), action=action), MESSAGE)
    assert outcome.action is expected and outcome.reply is None
    assert [f.name for f in outcome.findings] == ["AV_INFECTED"]


def test_an_engine_down_defers_the_message_with_451_470() -> None:
    down = FakeScanner(name="clamd")
    down.down = True
    outcome = check(agent(down), CLEAN)
    assert outcome.action is Action.TEMPFAIL and str(outcome.reply).startswith(
        "451 4.7.0 Virus scanner unavailable, try again later"
    )
    assert [f.name for f in outcome.findings] == ["AV_UNAVAILABLE"]
    assert "engine=clamd" in outcome.findings[0].detail


def test_a_slow_engine_is_unavailable() -> None:
    outcome = check(agent(FakeScanner(name="slow", delay=30.0)), CLEAN)
    assert outcome.action is Action.TEMPFAIL and "no answer within" in outcome.findings[0].detail


def test_a_virus_found_by_one_engine_is_refused_while_another_is_down() -> None:
    down = FakeScanner(name="yara")
    down.down = True
    outcome = check(agent(FakeScanner({VIRUS: "Test.Virus"}, name="clamd"), down), MESSAGE)
    assert outcome.action is Action.REJECT
    assert sorted(f.name for f in outcome.findings) == ["AV_INFECTED", "AV_UNAVAILABLE"]


def test_the_bias_lets_mail_through_when_enough_engines_answered() -> None:
    down = FakeScanner(name="b")
    down.down = True
    outcome = check(agent(FakeScanner(name="a"), down, require="any"), CLEAN)
    assert outcome.action is Action.CONTINUE
    assert [f.name for f in outcome.findings] == ["AV_UNAVAILABLE"]


def test_accept_on_unavailable_is_the_operators_fail_open() -> None:
    down = FakeScanner(name="clamd")
    down.down = True
    outcome = check(agent(down, on_unavailable="accept"), CLEAN)
    assert outcome.action is Action.CONTINUE and [f.name for f in outcome.findings] == ["AV_UNAVAILABLE"]
    assert outcome.headers == (("X-Edgeward-AV", "unscanned"),)


def test_no_engine_at_all_is_never_clean() -> None:
    outcome = check(agent(), CLEAN)
    assert outcome.action is Action.TEMPFAIL
    assert outcome.findings[0].detail == "no scan engine is enabled"


def test_an_item_too_large_is_refused_for_good_or_deferred() -> None:
    small = FakeScanner(name="clamd", max_stream=10)
    outcome = check(agent(small), CLEAN)
    assert outcome.action is Action.REJECT and str(outcome.reply).startswith("552 5.3.4")
    assert [f.name for f in outcome.findings] == ["AV_UNSCANNABLE"]
    outcome = check(agent(small, unscannable="tempfail"), CLEAN)
    assert outcome.action is Action.TEMPFAIL and str(outcome.reply).startswith("451 4.7.0")


def test_office_findings_take_their_own_action() -> None:
    office = FakeScanner({b"AutoOpen": "AutoOpen"}, name="office", finding="AV_MACRO_AUTOEXEC")
    macro = FakeScanner({b"Sub ": "VBA"}, name="office2", finding="AV_MACRO")
    data = CLEAN + b"Sub AutoOpen()\r\n"
    outcome = check(agent(office, macro), data)
    assert outcome.action is Action.REJECT
    assert str(outcome.reply).startswith("550 5.7.1 Dangerous content found: AutoOpen (message)")
    # A macro alone is only scored by default; with autoexec set to score, nothing decides.
    outcome = check(agent(office, macro, office={"vba_autoexec": "score"}), data)
    assert outcome.action is Action.CONTINUE
    assert sorted(f.name for f in outcome.findings) == ["AV_MACRO", "AV_MACRO_AUTOEXEC"]


def test_the_strongest_action_wins() -> None:
    office = FakeScanner({b"AutoOpen": "AutoOpen"}, name="office", finding="AV_MACRO_AUTOEXEC")
    virus = FakeScanner({VIRUS: "Test.Virus"}, name="clamd")
    data = MESSAGE + b"AutoOpen"
    outcome = check(agent(office, virus, action="discard", office={"vba_autoexec": "quarantine"}), data)
    assert outcome.action is Action.QUARANTINE


def test_hostile_signature_names_and_paths_never_break_a_reply_line() -> None:
    evil = FakeScanner({VIRUS: "Evil\r\n250 OK\x00" + "x" * 500}, name="clamd")
    outcome = check(agent(evil), MESSAGE)
    assert outcome.reply is not None
    text = str(outcome.reply)
    assert "\r" not in text.rstrip("\r\n") and "\n" not in text.rstrip("\r\n") and "\x00" not in text
    assert len(text) < 300


def test_a_hard_control_not_an_antispam_check() -> None:
    av = agent(FakeScanner())
    assert av.antispam is False and av.fail_open is False and av.stages == frozenset({Stage.EOD})


def _view_context(data: bytes) -> StageContext:
    session = SessionInfo("s1", Peer("192.0.2.1", 1234), ReceiveConnectorConfig(name="internet"))
    return StageContext(Stage.EOD, session, data=data, message=MessageView(data, parse_headers(data)))


def test_engines_get_the_walks_items_and_the_reply_names_the_part() -> None:
    virus = FakeScanner({VIRUS: "Test.Virus"}, name="hashes")
    data = message(("report.zip", zip_bytes({"docs/run.exe": b"MZ " + VIRUS}), "application/zip"))
    outcome = asyncio.run(agent(virus).check(Stage.EOD, _view_context(data)))
    [items] = virus.scanned
    assert [i.path for i in items] == ["1", "2/report.zip", "2/report.zip!docs/run.exe"]
    assert str(outcome.reply).startswith("550 5.7.1 Virus found: Test.Virus (2/report.zip!docs/run.exe)")


def test_a_walk_cut_short_also_hands_the_whole_message_to_the_engines() -> None:
    fake = FakeScanner(name="clamd")
    data = message(("a.txt", b"hello", "text/plain"))
    ctx = _view_context(data)
    assert ctx.message is not None
    ctx.message.walk.cut = True  # as a bound reached would leave it
    asyncio.run(agent(fake).check(Stage.EOD, ctx))
    assert [i.path for i in fake.scanned[0]][-1] == "message"
    assert fake.scanned[0][-1].data == data
