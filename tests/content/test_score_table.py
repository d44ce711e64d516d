"""The shipped score table over the real policy layer: content alone rejects only when very sure
(SCL 8 and up), and a medium SCL is rejected when the gateway's own checks add to it.

The SPF and sender-auth agents are the real ones over a DNS fake; the content filter is the real
agent and classifier over a model whose every message scores one chosen probability, so the SCL
is fixed while the policy decides. Sender reputation is the one finding given by a stub agent:
its rating needs twenty earlier messages in a policy store.
"""

from __future__ import annotations

import math

import pytest

from edgeward.config.schema import Config, ContentFilterConfig, ReceiveConnectorConfig
from edgeward.content.classifier import SCL_CUTS, SpamClassifier
from edgeward.content.model import LinearModel
from edgeward.filters.agents.content import ContentFilter
from edgeward.filters.agents.senderauth import SenderAuth
from edgeward.filters.agents.spf import SpfAgent
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.message import MessageView
from edgeward.filters.scoring import Thresholds
from edgeward.filters.verdict import Ledger, Verdict
from edgeward.headers import parse_headers
from edgeward.runtime_policy import build_policy
from edgeward.testing.dns import FakeResolver
from edgeward.types import Action, Address, Finding, Outcome, Peer

HOST = "mx.test"
CLIENT = "192.0.2.1"
DNS = FakeResolver(
    {
        ("pass.example", "TXT"): [f"v=spf1 ip4:{CLIENT} -all"],
        ("fail.example", "TXT"): ["v=spf1 ip4:198.51.100.0/24 -all"],
        ("soft.example", "TXT"): ["v=spf1 ~all"],
        ("_dmarc.soft.example", "TXT"): ["v=DMARC1; p=quarantine"],
    }
)


def classifier_at(scl: int) -> SpamClassifier:
    """A real classifier whose model gives every message the middle probability of ``scl``."""
    low, high = SCL_CUTS[scl - 1], SCL_CUTS[scl] if scl < 9 else 1.0
    p = (low + high) / 2
    model = LinearModel.empty(bits=12, fact_scale=0.1)
    model.bias = math.log(p / (1 - p))
    return SpamClassifier(model, learning=False)


class Reputation:
    """Stands in for sender-reputation's CONNECT finding (an address rated SRL ``n``)."""

    name = "sender-reputation"
    stages = frozenset({Stage.CONNECT})
    antispam = True
    fail_open = False

    def __init__(self, srl: int) -> None:
        self.srl = srl

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        return Outcome.proceed(Finding(f"SRL_{self.srl}", self.name))


async def verdict(scl: int, domain: str, srl: int | None = None) -> Verdict:
    config = Config(accepted_domains=("example.test",))
    agents = [
        *([Reputation(srl)] if srl is not None else []),
        SpfAgent(DNS, HOST),
        SenderAuth(DNS, HOST, quarantine_action="score"),
        ContentFilter(classifier_at(scl), ContentFilterConfig()),
    ]
    policy = build_policy(config, agents)
    info = SessionInfo("s1", Peer(CLIENT, 40000), ReceiveConnectorConfig(name="in"), helo="client.test")
    sender = Address("news", domain)
    ledger = Ledger()
    for stage in (Stage.CONNECT, Stage.MAIL):
        decision = await policy.stage(StageContext(stage, info, mail_from=sender), ledger)
        assert decision.reply is None
    data = (
        f"From: News <news@{domain}>\r\nTo: user@example.test\r\nSubject: Our autumn offers\r\n"
        f"Message-ID: <1@{domain}>\r\nDate: Wed, 02 Dec 2026 08:00:00 +0000\r\n\r\n"
        "See what is new in the shop this week.\r\n"
    ).encode()
    # As the session builds it: the message parsed once for every agent.
    headers = parse_headers(data)
    ctx = StageContext(
        Stage.EOD, info, mail_from=sender, recipients=(Address("user", "example.test"),), data=data,
        headers=headers, message=MessageView(data, headers),
    )  # fmt: skip
    return await policy.end_of_data(ctx, ledger)


def names(v: Verdict) -> list[str]:
    return sorted(f.name for f in v.findings if f.score)


@pytest.mark.parametrize(
    ("scl", "domain", "srl", "action", "scored"),
    [
        # Content alone: rejected from SCL 8 on, never below.
        (7, "pass.example", None, Action.CONTINUE, ["SCL_7"]),
        (8, "pass.example", None, Action.REJECT, ["SCL_8"]),
        (9, "pass.example", None, Action.REJECT, ["SCL_9"]),
        # An SPF fail (3) pushes SCL 6 and 7 over, not SCL 5.
        (7, "fail.example", None, Action.REJECT, ["SCL_7", "SPF_FAIL"]),
        (6, "fail.example", None, Action.REJECT, ["SCL_6", "SPF_FAIL"]),
        (5, "fail.example", None, Action.CONTINUE, ["SCL_5", "SPF_FAIL"]),
        # DMARC fail under p=quarantine (4) with its SPF softfail (1): SCL 4 over, SCL 3 not.
        (4, "soft.example", None, Action.REJECT, ["DMARC_FAIL_QUARANTINE", "SCL_4", "SPF_SOFTFAIL"]),
        (3, "soft.example", None, Action.CONTINUE, ["DMARC_FAIL_QUARANTINE", "SCL_3", "SPF_SOFTFAIL"]),
        # A bad reputation (SRL 6: 2) pushes SCL 7 over, not SCL 6.
        (7, "pass.example", 6, Action.REJECT, ["SCL_7", "SRL_6"]),
        (6, "pass.example", 6, Action.CONTINUE, ["SCL_6", "SRL_6"]),
    ],
)
async def test_content_alone_rejects_late_and_failed_checks_sooner(
    scl: int, domain: str, srl: int | None, action: Action, scored: list[str]
) -> None:
    result = await verdict(scl, domain, srl)
    assert (result.action, names(result)) == (action, scored), result.decided_by
    if action is Action.REJECT:
        assert result.reply is not None and (result.reply.code, result.reply.enhanced) == (550, "5.7.1")
        assert result.decided_by.startswith("threshold reject 7 ")


def test_a_content_filter_reject_threshold_keeps_meaning_the_scl_of_content_alone() -> None:
    # Inherited thresholds are the weight of SCL_<threshold>: an operator's SCL setting still
    # says where content alone acts, whatever the table weighs.
    assert Thresholds.from_config(Config()).values["reject"] == 7.0
    six = Thresholds.from_config(Config(agents={"content_filter": {"reject_threshold": 6}}))
    assert six.values["reject"] == 4.0
    heavier = Config(scores={"SCL_8": 8.5})
    assert Thresholds.from_config(heavier).values["reject"] == 8.5


def test_the_gateways_auth_results_reach_the_pcl_not_the_spam_probability() -> None:
    # No training message carries this gateway's results, so they have no model weight; the
    # score table adds SPF_FAIL and the DMARC findings instead (the cases above).
    classifier = SpamClassifier.load(learning=False)
    raw = (
        b"From: Billing <billing@bank.example>\r\nSubject: Your statement\r\n"
        b"Message-ID: <s1@bank.example>\r\n\r\nYour monthly statement is ready to view online.\r\n"
    )
    clean = classifier.score(raw)
    failed = classifier.score(raw, auth={"spf": "fail", "dkim": "fail", "dmarc": "fail"})
    assert failed.probability == clean.probability and failed.scl == clean.scl
    assert "PHISH_AUTH_FAIL" in dict(failed.findings) and failed.pcl > clean.pcl
