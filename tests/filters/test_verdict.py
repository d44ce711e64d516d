"""The policy layer's logic: score table, thresholds, the ledger over a session, exemptions."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from edgeward.config.schema import Config, ReceiveConnectorConfig
from edgeward.config.scores import SCORE_TABLE
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.exemptions import Exemptions
from edgeward.filters.pipeline import Pipeline, StageResult
from edgeward.filters.policy import Policy
from edgeward.filters.scoring import ScoreTable, Thresholds
from edgeward.filters.verdict import Ledger, decide
from edgeward.types import Action, Address, Finding, Outcome, Peer, Reply


def _result(*findings: Finding, headers: tuple[tuple[str, str], ...] = ()) -> StageResult:
    return StageResult(Outcome(Action.CONTINUE, None, findings, headers))


def _f(name: str, score: float, stage: str = "mail") -> Finding:
    return Finding(name, "test", "", score, stage)


def test_every_shipped_weight_has_a_meaning_and_scl_weights_rise_with_the_level() -> None:
    assert all(d.description for d in SCORE_TABLE.values())
    weights = [SCORE_TABLE[f"SCL_{n}"].weight for n in range(10)]
    assert weights == sorted(weights) and weights[0] == 0.0 and weights[9] == 9.0


def test_overrides_replace_the_shipped_weight_and_unknown_names_are_an_error() -> None:
    table = ScoreTable(Config(scores={"SPF_FAIL": 5.5}).scores)
    assert (
        table.weight("SPF_FAIL") == 5.5 and table.weight("SPF_SOFTFAIL") == SCORE_TABLE["SPF_SOFTFAIL"].weight
    )
    scored = table.scored(Finding("SPF_FAIL", "spf", "x"), "mail")
    assert (scored.score, scored.stage) == (5.5, "mail")
    with pytest.raises(ValidationError, match="SPF_FIAL"):
        Config(scores={"SPF_FIAL": 1.0})


def test_default_thresholds_are_the_content_filters_scl_settings() -> None:
    default = Thresholds.from_config(Config())
    assert default.values == {
        "discard": None,
        "reject": 7.0,
        "tempfail": None,
        "quarantine": None,
        "stamp": None,
    }
    assert default.rejection == Reply(550, "5.7.1", "Message rejected as spam by Content Filtering")
    without_content = Thresholds.from_config(Config(agents={"content_filter": {"enabled": False}}))
    assert without_content.rejection == Reply(550, "5.7.1", "Message rejected as spam")
    assert without_content.values["reject"] == default.values["reject"]
    legacy = Thresholds.from_config(
        Config(agents={"content_filter": {"reject_enabled": False, "quarantine_enabled": True}})
    )
    assert legacy.values["reject"] is None and legacy.values["quarantine"] == 9.0
    policy = Thresholds.from_config(Config(policy={"reject": "off", "tempfail": 5, "stamp": 3}))
    assert policy.values["reject"] is None and policy.values["tempfail"] == 5.0
    hit = policy.hit(6)
    assert hit is not None and (hit.name, hit.action) == ("tempfail", Action.TEMPFAIL)
    assert policy.hit(2.9) is None and policy.flagged(3.0)


def test_session_findings_survive_a_new_transaction_and_transaction_ones_do_not() -> None:
    ledger = Ledger()
    ledger.add(Stage.CONNECT, _result(_f("DNSBL_LISTED", 4, "connect")))
    ledger.add(Stage.HELO, _result(_f("SPF_NONE", 0.5, "helo")))
    ledger.add(Stage.MAIL, _result(_f("SPF_FAIL", 3), headers=(("Received-SPF", "fail"),)))
    assert [f.name for f in ledger.findings] == ["DNSBL_LISTED", "SPF_NONE", "SPF_FAIL"]
    assert ledger.headers == (("Received-SPF", "fail"),)
    ledger.new_transaction()
    assert [f.name for f in ledger.findings] == ["DNSBL_LISTED", "SPF_NONE"] and ledger.headers == ()
    ledger.new_helo()
    assert [f.name for f in ledger.findings] == ["DNSBL_LISTED"]


def test_the_total_decides_when_no_single_finding_would() -> None:
    ledger = Ledger()
    for stage, finding in ((Stage.CONNECT, _f("A", 2, "connect")), (Stage.MAIL, _f("B", 2)),
                           (Stage.RCPT, _f("C", 2, "rcpt")), (Stage.EOD, _f("D", 1.5, "eod"))):  # fmt: skip
        ledger.add(stage, _result(finding))
    eod = _result(_f("D", 1.5, "eod"))
    verdict = decide(ledger, eod, Thresholds.from_config(Config()))
    assert verdict.action is Action.REJECT and verdict.total == 7.5
    assert verdict.reply == Reply(550, "5.7.1", "Message rejected as spam by Content Filtering")
    assert verdict.decided_by == "threshold reject 7 (total 7.5)"
    assert decide(ledger, eod, Thresholds.from_config(Config()), observe_only=True).action is Action.CONTINUE


def test_a_hard_decision_and_an_exemption_come_before_the_total() -> None:
    ledger = Ledger()
    ledger.add(Stage.MAIL, _result(_f("SPF_FAIL", 9)))
    hard = StageResult(Outcome.reject(Reply(554, "5.4.6", "loop")), "hop-count")
    ledger.add(Stage.EOD, hard)
    thresholds = Thresholds.from_config(Config())
    verdict = decide(ledger, hard, thresholds)
    assert (verdict.action, verdict.decided_by) == (Action.REJECT, "agent hop-count")
    assert verdict.reply == Reply(554, "5.4.6", "loop")
    exempt = decide(ledger, _result(), thresholds, exempt="bypassed recipient")
    assert (exempt.action, exempt.decided_by) == (Action.CONTINUE, "exempt: bypassed recipient")


def test_exemptions_per_session_sender_recipient_and_message() -> None:
    ex = Exemptions(
        allow=["192.0.2.0/24", "2001:db8::/32"], senders=["boss@partner.test"],
        sender_domains=["*.trusted.test"], recipients=["abuse@example.test"],
    )  # fmt: skip
    assert ex.session(Peer("192.0.2.7", 1), False) == "client on the IP allow list"
    assert ex.session(Peer("::ffff:192.0.2.7", 1), False) == "client on the IP allow list"
    assert ex.session(Peer("2001:db8::1", 1), False) and not ex.session(Peer("198.51.100.1", 1), False)
    assert ex.session(Peer("198.51.100.1", 1), True) == "session has bypass_antispam"
    assert ex.sender(Address("Boss", "partner.test")) == "bypassed sender"
    assert ex.sender(Address("x", "mx.trusted.test")) == "bypassed sender domain"
    assert ex.sender(Address.null()) == ""
    abuse, user = Address("abuse", "example.test"), Address("user", "example.test")
    stranger = Address("s", "remote.test")
    assert asyncio.run(ex.recipient(stranger, abuse)) == "bypassed recipient"
    assert asyncio.run(ex.recipient(stranger, user)) == ""
    assert asyncio.run(ex.message("", stranger, [abuse, user])) == ""
    assert asyncio.run(ex.message("", stranger, [abuse])) == "every recipient exempt"


def test_content_filter_bypass_settings_are_exemptions_now() -> None:
    config = Config(agents={"content_filter": {"bypassed_recipients": ["abuse@example.test"]}},
                    policy={"bypassed_senders": ["ok@remote.test"]})  # fmt: skip
    ex = Exemptions.from_config(config)
    assert asyncio.run(ex.recipient(None, Address("abuse", "example.test"))) == "bypassed recipient"
    assert ex.sender(Address("ok", "remote.test")) == "bypassed sender"
    with pytest.raises(ValidationError, match="not an IP network"):
        Config(policy={"ip_allow": ["300.1.2.3/8"]})


class _CountingSafeSenders:
    def __init__(self, trusted: set[tuple[str, str]]) -> None:
        self.trusted = trusted
        self.asked: list[tuple[str, str]] = []

    async def trusts(self, recipient: Address, sender: Address) -> bool:
        self.asked.append((str(recipient), str(sender)))
        return (str(recipient), str(sender)) in self.trusted


async def test_a_recipients_exemption_is_asked_once_per_transaction_and_reused_after_rcpt() -> None:
    friend, user = Address("friend", "remote.test"), Address("user", "example.test")
    ops = Address("ops", "example.test")
    safe = _CountingSafeSenders({(str(user), str(friend)), (str(ops), str(friend))})
    policy = Policy(Pipeline([]), Thresholds.from_config(Config()), Exemptions(safe_senders=safe))
    info = SessionInfo("S1", Peer("198.51.100.1", 2525), ReceiveConnectorConfig(name="internet"))
    ledger = Ledger()

    async def stage(stage: Stage, rcpt: Address | None, rcpts: tuple[Address, ...]) -> str:
        ctx = StageContext(stage, info, mail_from=friend, recipient=rcpt, recipients=rcpts)
        return await policy.exemption(ctx, ledger)

    assert await stage(Stage.RCPT, user, ()) == "safe sender of the recipient"
    assert await stage(Stage.RCPT, ops, (user,)) == "safe sender of the recipient"
    assert await stage(Stage.DATA, None, (user, ops)) == "every recipient exempt"
    assert await stage(Stage.EOD, None, (user, ops)) == "every recipient exempt"
    assert safe.asked == [(str(user), str(friend)), (str(ops), str(friend))]
    # A new transaction asks again: the list may have changed, and the sender may be another.
    ledger.new_transaction()
    safe.trusted.clear()
    assert await stage(Stage.EOD, None, (user,)) == ""
    assert len(safe.asked) == 3
