"""Site learning's decisions against the shipped policy-store fake: which findings a message
gets (traps, reports, replies, correspondents), the authentication guard, and what the verdict
listener hands the learner."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgeward.config.schema import LearningConfig, ReceiveConnectorConfig
from edgeward.content.sitelearn import Lesson, Remember, SiteLearner, correspondent_key, sent_key
from edgeward.filters.agents.site_learning import SiteLearning, author_authenticated, referenced_ids
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.verdict import Verdict
from edgeward.headers import parse_headers
from edgeward.testing.policystore import MemoryPolicyStore
from edgeward.types import Action, Address, Finding, Peer

CFG = LearningConfig(spam_report_address=("spam@example.test",), trap_addresses=("trap@example.test",))
INTERNET = ReceiveConnectorConfig(name="internet")
OUTSIDE = SessionInfo("S1", Peer("192.0.2.10", 4000), INTERNET)
LOCAL = SessionInfo("S2", Peer("10.0.0.5", 4000), INTERNET, rights=frozenset({"relay"}))
DMARC_PASS = Finding("DMARC_PASS", "sender-auth", "header.from=auth.test")


def ctx(
    session: SessionInfo, rcpts: list[str], head: str = "", earlier: tuple[Finding, ...] = ()
) -> StageContext:
    data = (head or "From: friend@auth.test\r\nMessage-ID: <m1@auth.test>\r\n") + "\r\nbody\r\n"
    raw = data.encode()
    return StageContext(
        Stage.EOD, session, mail_from=Address("friend", "auth.test"),
        recipients=tuple(Address(*r.split("@")) for r in rcpts), data=raw, headers=parse_headers(raw),
        earlier=earlier,
    )  # fmt: skip


class Recorder(SiteLearner):
    """The real learner, its worker not started: the test reads what was queued."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp / "model.db", capacity=10)
        self.jobs: list[Remember | Lesson] = []

    def submit(self, job: Remember | Lesson) -> bool:
        self.jobs.append(job)
        return True


@pytest.fixture
def store() -> MemoryPolicyStore:
    return MemoryPolicyStore()


def names(outcome_findings: tuple[Finding, ...]) -> list[str]:
    return [f.name for f in outcome_findings]


def accepted(c: StageContext, *findings: Finding, action: Action = Action.CONTINUE) -> Verdict:
    return Verdict(action, None, findings, (), 0.0, "test")


@pytest.mark.parametrize(
    ("findings", "expected"),
    [
        ((DMARC_PASS,), True),
        ((Finding("DMARC_PASS", "sender-auth", "header.from=other.test"),), False),
        (
            (
                Finding("DMARC_FAIL", "sender-auth", "header.from=auth.test"),
                Finding("DKIM_PASS", "sender-auth", "d=auth.test s=s1"),
            ),
            False,
        ),
        ((Finding("DKIM_PASS", "sender-auth", "d=auth.test s=s1"),), True),
        ((Finding("DKIM_PASS", "sender-auth", "d=evil.test s=s1"),), False),
        ((Finding("SPF_PASS", "spf", "mailfrom=bounce.auth.test"),), True),  # relaxed alignment
        ((Finding("SPF_PASS", "spf", "mailfrom=auth.test.evil.test"),), False),
        ((Finding("SPF_PASS", "spf", "mailfrom=auth.test"),), True),
        ((Finding("SPF_PASS", "spf", "helo=auth.test"),), False),
        ((Finding("DMARC_PASS", "someone-else", "header.from=auth.test"),), False),
        ((), False),
    ],
)
def test_only_the_gateways_own_aligned_results_vouch_for_the_author(
    findings: tuple[Finding, ...], expected: bool
) -> None:
    assert author_authenticated(findings, "auth.test") is expected


def test_referenced_ids_take_in_reply_to_then_the_newest_references() -> None:
    head = parse_headers(b"In-Reply-To: <a@x>\r\nReferences: <r1@x> <r2@x>\r\n <a@x>\r\n\r\n")
    assert referenced_ids(head) == ["a@x", "r2@x", "r1@x"]


async def test_trap_mail_is_discarded_whoever_else_it_names(store: MemoryPolicyStore) -> None:
    agent = SiteLearning(CFG, ["example.test"], store)
    out = await agent.check(Stage.EOD, ctx(OUTSIDE, ["trap@example.test", "user@example.test"]))
    assert out.action is Action.DISCARD and names(out.findings) == ["TRAP_HIT"]


async def test_reports_count_from_local_users_only(store: MemoryPolicyStore) -> None:
    agent = SiteLearning(CFG, ["example.test"], store)
    alone = await agent.check(Stage.EOD, ctx(LOCAL, ["spam@example.test"]))
    assert alone.action is Action.DISCARD and names(alone.findings) == ["SPAM_REPORT"]
    copied = await agent.check(Stage.EOD, ctx(LOCAL, ["spam@example.test", "boss@example.test"]))
    assert copied.action is Action.CONTINUE and names(copied.findings) == ["SPAM_REPORT"]
    outsider = await agent.check(Stage.EOD, ctx(OUTSIDE, ["spam@example.test"]))
    assert outsider.action is Action.CONTINUE and names(outsider.findings) == ["SPAM_REPORT_OUTSIDER"]


async def test_replies_and_correspondents_need_an_authenticated_author(store: MemoryPolicyStore) -> None:
    agent = SiteLearning(CFG, ["example.test"], store)
    await store.set(sent_key("out1@example.test"), "user@example.test", ttl=60)
    await store.set(correspondent_key("user@example.test", "friend@auth.test"), "1", ttl=60)
    reply = "From: Friend <friend@auth.test>\r\nIn-Reply-To: <out1@example.test>\r\n"
    found = await agent.check(Stage.EOD, ctx(OUTSIDE, ["user@example.test"], reply, (DMARC_PASS,)))
    assert names(found.findings) == ["REPLY_TO_LOCAL"]
    known = await agent.check(Stage.EOD, ctx(OUTSIDE, ["user@example.test"], earlier=(DMARC_PASS,)))
    assert names(known.findings) == ["KNOWN_CORRESPONDENT"]
    forged = await agent.check(Stage.EOD, ctx(OUTSIDE, ["user@example.test"], reply))
    assert forged.findings == ()
    stranger = await agent.check(Stage.EOD, ctx(OUTSIDE, ["other@example.test"], earlier=(DMARC_PASS,)))
    assert stranger.findings == ()


async def test_the_listener_queues_lessons_only_for_accepted_mail(
    store: MemoryPolicyStore, tmp_path: Path
) -> None:
    learner = Recorder(tmp_path)
    agent = SiteLearning(CFG, ["example.test"], store, learner)
    c = ctx(OUTSIDE, ["user@example.test"])
    reply = Finding("REPLY_TO_LOCAL", agent.name, "")
    await agent.learned(c, accepted(c, reply))
    await agent.learned(c, accepted(c, reply, action=Action.QUARANTINE))
    await agent.learned(c, replace(accepted(c, reply), flagged=True))
    await agent.learned(c, accepted(c, Finding("REPLY_TO_LOCAL", "someone-else", "")))
    assert learner.jobs == [Lesson("reply", c.data, False)]


async def test_the_listener_remembers_outbound_mail_and_its_outside_recipients(
    store: MemoryPolicyStore, tmp_path: Path
) -> None:
    learner = Recorder(tmp_path)
    agent = SiteLearning(CFG, ["example.test"], store, learner)
    c = ctx(
        LOCAL, ["friend@auth.test", "boss@example.test"], "From: user@example.test\r\nMessage-ID: <o1@x>\r\n"
    )
    c = replace(c, mail_from=Address("user", "example.test"))
    await agent.learned(c, accepted(c))
    [job] = learner.jobs
    assert isinstance(job, Remember)
    assert (job.sender, job.message_id, job.recipients) == (
        "user@example.test",
        "o1@x",
        ("friend@auth.test",),
    )


async def test_learning_off_queues_nothing_but_traps_still_drop(
    store: MemoryPolicyStore, tmp_path: Path
) -> None:
    learner = Recorder(tmp_path)
    agent = SiteLearning(replace_cfg(enabled=False), ["example.test"], store, learner)
    trap = await agent.check(Stage.EOD, ctx(OUTSIDE, ["trap@example.test"]))
    assert trap.action is Action.DISCARD
    c = ctx(OUTSIDE, ["trap@example.test"])
    await agent.learned(c, accepted(c, *trap.findings, action=Action.DISCARD))
    report = await agent.check(Stage.EOD, ctx(LOCAL, ["spam@example.test"]))
    assert report.action is Action.CONTINUE and report.findings == ()
    assert learner.jobs == []


def replace_cfg(**changes: object) -> LearningConfig:
    return CFG.model_copy(update=changes)


async def test_a_correspondent_the_content_filter_would_reject_is_not_learned(
    store: MemoryPolicyStore, tmp_path: Path
) -> None:
    learner = Recorder(tmp_path)
    agent = SiteLearning(CFG, ["example.test"], store, learner, conflict_scl=7)
    c = ctx(OUTSIDE, ["user@example.test"])
    known = Finding("KNOWN_CORRESPONDENT", agent.name, "")
    await agent.learned(c, accepted(c, Finding("SCL_9", "content-filter", ""), known))
    assert learner.jobs == []
    await agent.learned(c, accepted(c, Finding("SCL_6", "content-filter", ""), known))
    assert learner.jobs == [Lesson("correspondent", c.data, False)]
