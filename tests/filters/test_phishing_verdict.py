"""The phishing level as its own verdict, its stamps, and the Exchange organisation headers.

- ``[policy] pcl_quarantine`` (7) and ``pcl_reject`` (off) act on the content filter's
  ``PCL_<n>`` finding, apart from the spam total; the more severe of the two actions wins and
  ``decided_by`` names the rule;
- ``X-Edgeward-PCL`` is stamped; with ``[stamps] exchange_organization`` the
  ``X-MS-Exchange-Organization-*`` fields are too, and client copies of them are always removed.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgeward.config.schema import Config, ReceiveConnectorConfig
from edgeward.config.scores import SCORE_TABLE
from edgeward.filters.base import SessionInfo, Stage
from edgeward.filters.pipeline import StageResult
from edgeward.filters.scoring import Thresholds
from edgeward.filters.transforms.internal import strip_internal
from edgeward.filters.transforms.stamps import exchange_scl, stamp_headers
from edgeward.filters.verdict import Ledger, Verdict, decide, phishing_level
from edgeward.types import Action, Finding, Outcome, Peer, Reply


def _ledger(*findings: Finding) -> tuple[Ledger, StageResult]:
    ledger, eod = Ledger(), StageResult(Outcome(Action.CONTINUE, None, findings))
    ledger.add(Stage.EOD, eod)
    return ledger, eod


def _f(name: str, score: float = 0.0) -> Finding:
    return Finding(name, "content-filter", "", score, "eod")


def test_pcl_findings_weigh_nothing_and_the_shipped_thresholds_quarantine_at_7() -> None:
    assert all(SCORE_TABLE[f"PCL_{n}"].weight == 0.0 for n in range(1, 9))
    thresholds = Thresholds.from_config(Config())
    assert thresholds.pcl == {"reject": None, "quarantine": 7}
    assert phishing_level((_f("SCL_2", 2), _f("PCL_8"))) == 8 and phishing_level((_f("SCL_2", 2),)) == 0


def test_a_phishing_level_quarantines_mail_the_spam_total_would_deliver() -> None:
    verdict = decide(*_ledger(_f("SCL_2", 2), _f("PCL_7")), Thresholds.from_config(Config()))
    assert (verdict.action, verdict.decided_by) == (Action.QUARANTINE, "phishing pcl_quarantine 7 (PCL 7)")
    below = decide(*_ledger(_f("SCL_2", 2), _f("PCL_6")), Thresholds.from_config(Config()))
    assert (below.action, below.decided_by) == (Action.CONTINUE, "no threshold (total 2)")


def test_the_more_severe_rule_wins_and_the_spam_rule_on_a_tie() -> None:
    spam_reject = decide(*_ledger(_f("SCL_8", 8), _f("PCL_8")), Thresholds.from_config(Config()))
    assert (spam_reject.action, spam_reject.decided_by) == (Action.REJECT, "threshold reject 7 (total 8)")
    strict = Thresholds.from_config(Config(policy={"pcl_reject": 8, "quarantine": 4}))
    phish_reject = decide(*_ledger(_f("SCL_5", 5), _f("PCL_8")), strict)
    assert (phish_reject.action, phish_reject.decided_by) == (Action.REJECT, "phishing pcl_reject 8 (PCL 8)")
    assert phish_reject.reply == Reply(550, "5.7.1", "Message rejected as suspected phishing")
    tie = decide(*_ledger(_f("SCL_5", 5), _f("PCL_7")), strict)
    assert (tie.action, tie.decided_by) == (Action.QUARANTINE, "threshold quarantine 4 (total 5)")


def test_off_exempt_and_observe_only_leave_phishing_mail_alone() -> None:
    off = Thresholds.from_config(Config(policy={"pcl_quarantine": "off"}))
    assert decide(*_ledger(_f("PCL_8")), off).action is Action.CONTINUE
    shipped = Thresholds.from_config(Config())
    exempt = decide(*_ledger(_f("PCL_8")), shipped, exempt="bypassed sender")
    assert (exempt.action, exempt.decided_by) == (Action.CONTINUE, "exempt: bypassed sender")
    observed = decide(*_ledger(_f("PCL_8")), shipped, observe_only=True)
    assert observed.action is Action.CONTINUE
    assert observed.decided_by == "observe-only: would phishing pcl_quarantine 7 (PCL 8)"


@pytest.mark.parametrize("bad", [0, 9, -1, "high"])
def test_a_phishing_threshold_is_a_level_of_1_to_8_or_off(bad: object) -> None:
    with pytest.raises(ValidationError, match="pcl_quarantine"):
        Config(policy={"pcl_quarantine": bad})


def _verdict(*findings: Finding, total: float = 0.0, exempt: str = "") -> Verdict:
    return Verdict(Action.CONTINUE, None, findings, (), total, "no threshold", exempt)


def test_the_pcl_is_stamped_and_exchange_fields_only_when_asked() -> None:
    verdict = _verdict(_f("SCL_3", 3), _f("PCL_5"), total=3.5)
    plain = dict(stamp_headers(verdict))
    assert plain["X-Edgeward-PCL"] == "5"
    assert not [n for n in plain if n.startswith("X-MS-Exchange")]
    exchange = dict(stamp_headers(verdict, exchange=True, client_ip="192.0.2.7"))
    assert exchange["X-MS-Exchange-Organization-SCL"] == "3"
    assert exchange["X-MS-Exchange-Organization-PCL"] == "5"
    assert exchange["X-MS-Exchange-Organization-Antispam-Report"].startswith("OrigIP:192.0.2.7;SCL:3;")
    assert "TOTAL:3.5" in exchange["X-MS-Exchange-Organization-Antispam-Report"]


def test_the_exchange_scl_is_the_total_clamped_to_0_9_and_minus_1_when_exempt() -> None:
    assert [exchange_scl(_verdict(total=t)) for t in (-3.0, 0.5, 6.99, 7.0, 23.0)] == [0, 0, 6, 7, 9]
    exempt = _verdict(total=0.0, exempt="bypassed sender")
    assert exchange_scl(exempt) == -1
    assert dict(stamp_headers(exempt, exchange=True))["X-MS-Exchange-Organization-SCL"] == "-1"


FORGED = (
    b"X-MS-Exchange-Organization-SCL: -1\r\n"
    b"x-ms-exchange-organization-authas: Internal\r\n"
    b"X-MS-Exchange-Organization-Antispam-Report: SCL:-1;\r\n\tfolded\r\n"
    b"X-MS-Exchange-Forest-RulesExecuted: mx\r\n"
    b"X-Edgeward-PCL: 1\r\n"
    b"X-MS-Exchange-CrossTenant-Id: kept\r\n"
    b"Subject: hi\r\n\r\nX-MS-Exchange-Organization-SCL: -1 in the body stays\r\n"
)


def _info(*rights: str) -> SessionInfo:
    connector = ReceiveConnectorConfig(name="internet")
    return SessionInfo("S1", Peer("192.0.2.7", 2525), connector, rights=frozenset(rights))


def test_forged_exchange_organisation_fields_are_removed_from_outside_clients() -> None:
    stripped = strip_internal(FORGED, _info("submit"))
    assert stripped == (
        b"X-MS-Exchange-CrossTenant-Id: kept\r\nSubject: hi\r\n\r\n"
        b"X-MS-Exchange-Organization-SCL: -1 in the body stays\r\n"
    )
    assert strip_internal(FORGED, _info("keep_internal_headers")) == FORGED
