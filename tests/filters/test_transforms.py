"""Transforms after acceptance: the stamps, and the removal of forged internal headers."""

from __future__ import annotations

from edgeward.config.schema import ContentFilterConfig, ReceiveConnectorConfig
from edgeward.content.classifier import SpamClassifier
from edgeward.filters.agents.content import ContentFilter
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.message import MessageView
from edgeward.filters.transforms import Accepted, Transforms
from edgeward.filters.transforms.stamps import stamp_headers
from edgeward.filters.verdict import Verdict
from edgeward.headers import parse_headers
from edgeward.types import Action, Address, Finding, Peer

INFO = SessionInfo("s1", Peer("192.0.2.1", 1234), ReceiveConnectorConfig(name="internet"), helo="c.test")
MESSAGE = b"From: a@remote.test\r\nX-Edgeward-SCL: -1\r\nSubject: hi\r\n\r\nhello\r\n"


def _verdict(**kw: object) -> Verdict:
    base: dict[str, object] = {
        "action": Action.CONTINUE, "reply": None, "total": 5.0, "decided_by": "no threshold (total 5)",
        "findings": (
            Finding("SPF_FAIL", "spf", "", 3.0, "mail"), Finding("SCL_2", "content-filter", "", 2.0, "eod"),
        ),
        "headers": (
            ("Received-SPF", "fail"), ("X-Edgeward-SCL", "2"), ("X-Edgeward-Antispam-Report", "SCL:2;PCL:1"),
        ),
    }  # fmt: skip
    base.update(kw)
    return Verdict(**base)  # type: ignore[arg-type]


def test_the_report_joins_the_content_part_with_every_scored_finding() -> None:
    stamps = dict(stamp_headers(_verdict()))
    assert stamps["X-Edgeward-Antispam-Report"] == (
        "SCL:2;PCL:1;TOTAL:5;RULE:no threshold (total 5);S:SPF_FAIL@mail=3,SCL_2@eod=2"
    )
    assert stamps["Received-SPF"] == "fail" and "X-Edgeward-Spam-Flag" not in stamps


def test_spam_flag_at_the_stamp_threshold_and_scl_minus_one_when_exempt() -> None:
    assert ("X-Edgeward-Spam-Flag", "YES") in stamp_headers(_verdict(flagged=True))
    exempt = _verdict(exempt="bypassed sender", findings=(), headers=(), total=0.0)
    assert ("X-Edgeward-SCL", "-1") in stamp_headers(exempt)


def test_forged_stamps_go_and_ours_sit_on_top_under_the_trace_header() -> None:
    transforms = Transforms()
    inbound = transforms.inbound(MESSAGE, INFO)
    assert b"X-Edgeward-SCL" not in inbound
    trusted = SessionInfo("s2", INFO.peer, INFO.connector, rights=frozenset({"keep_internal_headers"}))
    assert transforms.inbound(MESSAGE, trusted) == MESSAGE
    accepted = Accepted("01ID", INFO, "mx.test", (Address("u", "example.test"),), _verdict())
    out = transforms.accepted(inbound, accepted).decode()
    assert out.startswith("Received: from c.test ([192.0.2.1])\r\n\tby mx.test (Edgeward) with SMTP id 01ID")
    names = [line.split(":", 1)[0] for line in out.split("\r\n") if line and not line[0].isspace()]
    assert names[:5] == ["Received", "Received-SPF", "X-Edgeward-SCL", "X-Edgeward-Antispam-Report", "From"]


async def test_the_content_filter_reads_the_message_parsed_once_for_every_agent() -> None:
    data = b"From: a@remote.test\r\nSubject: hello\r\n\r\nA plain note about lunch.\r\n"
    view = MessageView(data, parse_headers(data))
    ctx = StageContext(Stage.EOD, INFO, data=data, headers=view.headers, message=view)
    agent = ContentFilter(SpamClassifier.load(None), ContentFilterConfig())
    outcome = await agent.check(Stage.EOD, ctx)
    assert view.parsed  # the agent used the shared parse
    finding, phishing = outcome.findings
    assert finding.name.startswith("SCL_") and outcome.action is Action.CONTINUE
    assert phishing.name == "PCL_1"  # a plain note has no phishing cue
    assert dict(outcome.headers)["X-Edgeward-SCL"] == finding.name.removeprefix("SCL_")
