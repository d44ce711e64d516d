"""The learning worker: what a spam report carries, the bounded queue, GTUBE never learned,
the ledger `spam status` reads, and lessons that give the same model every time."""

from __future__ import annotations

import asyncio
import email.policy
import hashlib
from email.message import EmailMessage
from pathlib import Path

import pytest

from edgeward.content.analyze import GTUBE
from edgeward.content.classifier import SpamClassifier
from edgeward.content.sitelearn import Lesson, Remember, SiteLearner, reported_messages
from edgeward.content.state import SqliteModelStateStore
from edgeward.testing.clock import FakeClock
from edgeward.testing.policystore import MemoryPolicyStore

DATA = Path(__file__).resolve().parent / "data"
SPAM = (DATA / "spam.eml").read_bytes()
HAM = (DATA / "ham.eml").read_bytes()
# Between ham and spam for the shipped model, so one lesson moves it visibly.
BORDERLINE = HAM.replace(b"Thanks,", b"Order our new service today, special offer for you.\nThanks,")


def forward(*attached: bytes) -> bytes:
    report = EmailMessage()
    report["From"] = "user@example.test"
    report["To"] = "spam@example.test"
    report["Subject"] = "Fwd: spam"
    report.set_content("Please look at this.\n")
    for raw in attached:
        report.add_attachment(email.message_from_bytes(raw, policy=email.policy.default))
    return report.as_bytes(policy=email.policy.SMTP)


def arf(third: bytes, kind: str = "message/rfc822") -> bytes:
    """An RFC 5965 feedback report: human text, the machine part, the reported message."""
    return (
        b"From: user@example.test\r\nTo: spam@example.test\r\nSubject: FW: report\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        b"--B\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n\r\n"
        b"--B\r\nContent-Type: " + kind.encode() + b"\r\n\r\n" + third + b"\r\n--B--\r\n"
    )


def subject_of(raw: bytes) -> str:
    return str(email.message_from_bytes(raw)["Subject"])


def test_a_forwarded_message_is_what_a_report_teaches_not_the_report() -> None:
    [carried] = reported_messages(forward(SPAM))
    assert subject_of(carried) == subject_of(SPAM)
    assert b"Please look at this" not in carried


def test_a_forward_of_a_forward_is_one_message() -> None:
    [carried] = reported_messages(forward(forward(SPAM)))
    assert subject_of(carried) == "Fwd: spam"


def test_arf_reports_carry_the_message_or_its_header() -> None:
    [whole] = reported_messages(arf(SPAM.replace(b"\n", b"\r\n")))
    assert subject_of(whole) == subject_of(SPAM)
    header = SPAM.split(b"\n\n", 1)[0].replace(b"\n", b"\r\n")
    [head] = reported_messages(arf(header, "text/rfc822-headers"))
    assert subject_of(head) == subject_of(SPAM) and head.endswith(b"\r\n\r\n")


def test_headers_outside_an_arf_report_and_plain_mail_carry_nothing() -> None:
    assert reported_messages(SPAM) == []
    plain = arf(b"Subject: x\r\n", "text/rfc822-headers").replace(b"feedback-report;", b"other;")
    assert reported_messages(plain) == []


async def test_a_full_queue_drops_and_counts_without_waiting(tmp_path: Path) -> None:
    learner = SiteLearner(tmp_path / "m.db", capacity=2)
    assert [learner.submit(Lesson("trap", SPAM, True)) for _ in range(3)] == [True, True, False]
    assert (learner.pending, learner.dropped) == (2, 1)
    await learner.close()


async def run_lessons(learner: SiteLearner, *jobs: Lesson | Remember) -> None:
    worker = asyncio.get_running_loop().create_task(learner.run())
    for job in jobs:
        assert learner.submit(job)
    assert await learner.drain(60)
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    await learner.close()


async def test_lessons_reach_the_model_and_the_ledger_and_gtube_is_skipped(tmp_path: Path) -> None:
    state = tmp_path / "m.db"
    before = SpamClassifier.load().score(BORDERLINE).probability
    gtube = HAM.replace(b"\n\n", b"\n\n" + GTUBE + b"\n", 1)
    lessons = Lesson("report", forward(BORDERLINE), True), Lesson("trap", gtube, True)
    await run_lessons(SiteLearner(state), *lessons)
    with SqliteModelStateStore(state) as store:
        counts = {(c.path, c.label): c.count for c in store.learned_counts()}
        gauges = {name: value for name, (value, _) in store.gauges().items()}
        live = SpamClassifier.load(store=store, learning=False)
    assert counts == {("report", "spam"): 1}
    assert gauges["skipped"] == 1 and gauges["dropped"] == 0
    assert live.version >= 1 and live.score(BORDERLINE).probability > before + 0.01


async def test_outbound_memory_goes_to_the_policy_store_with_its_ttls(tmp_path: Path) -> None:
    clock = FakeClock()
    store = MemoryPolicyStore(clock)
    job = Remember("User@example.test", "o1@example.test", ("friend@auth.test",), 100.0, 1000.0)
    await run_lessons(SiteLearner(tmp_path / "m.db", policy_store=store), job)
    assert await store.get("sent:o1@example.test") == "user@example.test"
    assert await store.get("corr:user@example.test|friend@auth.test") is not None
    clock.advance(101)
    assert await store.get("sent:o1@example.test") is None
    assert await store.get("corr:user@example.test|friend@auth.test") is not None


async def test_the_same_lessons_give_the_same_model_byte_for_byte(tmp_path: Path) -> None:
    lessons = [Lesson("report", forward(SPAM), True), Lesson("reply", HAM, False), Lesson("trap", SPAM, True)]
    digests = []
    for run in ("a", "b"):
        state = tmp_path / f"{run}.db"
        await run_lessons(SiteLearner(state), *lessons)
        with SqliteModelStateStore(state) as store:
            stored = store.get("default")
        assert stored is not None
        digests.append(hashlib.sha256(stored.blob).hexdigest())
    assert digests[0] == digests[1]


async def test_the_queue_is_bounded_in_bytes_too(tmp_path: Path) -> None:
    learner = SiteLearner(tmp_path / "m.db", capacity=100, max_bytes=len(SPAM) * 2)
    assert [learner.submit(Lesson("trap", SPAM, True)) for _ in range(3)] == [True, True, False]
    assert learner.dropped == 1
    await learner.close()


async def test_a_failing_lesson_is_logged_and_the_worker_goes_on(tmp_path: Path) -> None:
    broken = tmp_path / "not-a-database"
    broken.mkdir()  # SQLite cannot open a folder: every lesson fails
    learner = SiteLearner(broken, policy_store=MemoryPolicyStore())
    worker = asyncio.get_running_loop().create_task(learner.run())
    assert learner.submit(Lesson("trap", SPAM, True))
    assert learner.submit(Remember("user@example.test", "o2@example.test", (), 60.0, 60.0))
    assert await learner.drain(60)
    assert not worker.done()
    assert learner.policy_store is not None and await learner.policy_store.get("sent:o2@example.test")
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    await learner.close()
