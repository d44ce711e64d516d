"""Content scoring in worker processes: real workers, the same verdicts, closed on failure."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import edgeward.content.workers as workers_module
from edgeward.config.schema import ContentFilterConfig, ReceiveConnectorConfig
from edgeward.content import SpamClassifier, SqliteModelStateStore
from edgeward.content.corpora import corpus_sets
from edgeward.content.words import CustomWords
from edgeward.content.worker import verdict_from_json, verdict_to_json
from edgeward.content.workers import ScoringWorkerError, ScoringWorkers, Worker
from edgeward.filters.agents.content import ContentFilter
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.message import MessageView
from edgeward.filters.pipeline import Pipeline
from edgeward.headers import parse_headers
from edgeward.types import Peer

from .conftest import CORPORA, DATA, read

ACCEPTED = ("example.com",)
AUTH = {"spf": "fail", "dkim": "none"}


def busy() -> float:
    """A CPU clock as fast as the wall clock: the process looks saturated."""
    return time.monotonic()


def pool(size: int = 1, cpu_clock: Callable[[], float] = busy, **settings: float) -> ScoringWorkers:
    start_load = settings.pop("start_load", 0.0)
    # Every message goes: the tests' messages are smaller than a production worker would take.
    return ScoringWorkers(size, start_load=start_load, min_size=0, cpu_clock=cpu_clock, **settings)


async def ready(workers: ScoringWorkers, classifier: SpamClassifier) -> Worker:
    return await ready_for(workers, classifier, 1)


async def ready_for(workers: ScoringWorkers, classifier: SpamClassifier, size: int) -> Worker:
    """Offer messages of ``size`` bytes until a worker with ``classifier`` loaded takes one."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        worker = workers.take(classifier, size)
        if worker is not None:
            return worker
        await asyncio.sleep(0.05)
    raise AssertionError("no worker became ready")


def messages() -> list[bytes]:
    found = [path.read_bytes() for path in sorted(DATA.glob("*.eml"))]
    if CORPORA.exists():
        for sample in corpus_sets(CORPORA):
            if sample.split == "dev":
                found += [raw for _, raw, _ in sample.messages[:40]]
    return found


async def test_a_worker_gives_the_verdict_the_process_gives() -> None:
    classifier = SpamClassifier.load(
        learning=False, own_domains=ACCEPTED, words=CustomWords(good=("quarterly board pack",))
    )
    workers = pool()
    try:
        worker = await ready(workers, classifier)
        samples = messages()
        samples.append(b"Subject: minutes\r\n\r\nthe quarterly board pack is attached\r\n")
        samples.append(
            b"From: Bob <bob@secure-example.com>\r\nSubject: pay\r\n\r\nhttps://secure-example.com/pay\r\n"
        )
        for raw in samples:
            assert await workers.score(worker, raw, AUTH) == classifier.score(raw, None, AUTH)
    finally:
        await workers.close()
    assert len(samples) > 10


async def test_a_live_model_taught_elsewhere_reaches_the_workers(tmp_path: Path) -> None:
    raw = read("ham.eml")
    path = tmp_path / "m.db"
    with SqliteModelStateStore(path) as gateway_store, SqliteModelStateStore(path) as cli:
        classifier = SpamClassifier.load(store=gateway_store)
        workers = pool()
        try:
            before = await workers.score(await ready(workers, classifier), raw, {})
            SpamClassifier.load(store=cli).learn(raw, is_spam=True)  # 'edgeward spam learn'
            assert classifier.refresh() is True
            # The worker is sent the new model; until it has it, messages are scored here.
            after = await workers.score(await ready(workers, classifier), raw, {})
        finally:
            await workers.close()
        assert after.probability > before.probability
        assert after == classifier.score(raw)


async def test_a_model_without_a_file_is_sent_as_one() -> None:
    """A classifier built from a model object (or taught in memory) has no file bytes to send."""
    base = SpamClassifier.load(learning=False)
    classifier = SpamClassifier(base.model, learning=True)
    raw = read("spam.eml")
    classifier.learn(raw, is_spam=False)
    assert classifier.blob is None
    workers = pool()
    try:
        verdict = await workers.score(await ready(workers, classifier), raw, {})
    finally:
        await workers.close()
    assert verdict == classifier.score(raw)


async def test_a_process_with_time_to_spare_scores_itself() -> None:
    classifier = SpamClassifier.load(learning=False)
    idle_cpu = pool(cpu_clock=lambda: 0.0)
    try:
        idle_cpu.note(10.0)  # a heavy scoring load, but the process is not saturated
        for _ in range(12):
            assert idle_cpu.take(classifier, 1) is None
            await asyncio.sleep(0.1)
        assert idle_cpu.running == 0 and idle_cpu.started == 0
    finally:
        await idle_cpu.close()


async def test_workers_start_at_the_load_and_stop_when_it_is_gone() -> None:
    classifier = SpamClassifier.load(learning=False)
    workers = pool(start_load=0.5, idle_stop=0.4)
    try:
        for _ in range(8):
            assert workers.take(classifier, 1) is None  # the load is under start_load
            await asyncio.sleep(0.1)
        assert workers.started == 0
        workers.note(2.0)  # two seconds of scoring just now: a full core over the gauge
        await ready(workers, classifier)
        assert workers.running == 1
        for _ in range(100):  # the stop is the pool's own timer: nothing here to wait on but time
            if not workers.running:
                break
            await asyncio.sleep(0.1)
        assert workers.running == 0, "an idle worker stops"
    finally:
        await workers.close()


async def test_a_killed_worker_fails_its_message_and_a_new_one_takes_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workers_module, "RESPAWN_PAUSE", 0.0)
    classifier = SpamClassifier.load(learning=False)
    workers = pool()
    try:
        worker = await ready(workers, classifier)
        first = worker.process.pid
        os.kill(first, signal.SIGKILL)
        with pytest.raises(ScoringWorkerError):
            await workers.score(worker, read("ham.eml"), {})
        assert workers.failed == 1
        replacement = await ready(workers, classifier)
        assert replacement.process.pid != first
        assert await workers.score(replacement, read("ham.eml"), {}) == classifier.score(read("ham.eml"))
    finally:
        await workers.close()


async def test_a_worker_that_does_not_answer_is_stopped_at_the_time_limit() -> None:
    classifier = SpamClassifier.load(learning=False)
    workers = pool(timeout=0.5)
    try:
        worker = await ready(workers, classifier)
        os.kill(worker.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(ScoringWorkerError, match="longer than"):
            await workers.score(worker, read("ham.eml"), {})
        assert time.monotonic() - started < 5
        assert workers.running == 0
        await asyncio.sleep(0.2)
        assert worker.process.poll() is not None, "the stopped worker was killed"
    finally:
        await workers.close()


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [],
        {"p": 1.5, "scl": 9, "pcl": 1, "findings": [], "lookalikes": []},
        {"p": 0.5, "scl": 10, "pcl": 1, "findings": [], "lookalikes": []},
        {"p": 0.5, "scl": True, "pcl": 1, "findings": [], "lookalikes": []},
        {"p": 0.5, "scl": 5, "pcl": 1, "findings": [["GTUBE"]], "lookalikes": []},
        {"p": 0.5, "scl": 5, "pcl": 1, "findings": [], "lookalikes": [["a", "b", "c", 4]]},
        {"p": "0.5", "scl": 5, "pcl": 1, "findings": [], "lookalikes": []},
    ],
)
def test_an_answer_that_is_not_a_verdict_is_refused(answer: object) -> None:
    with pytest.raises(ValueError):
        verdict_from_json(answer)


async def test_a_small_message_is_scored_where_it_is() -> None:
    classifier = SpamClassifier.load(learning=False)
    workers = ScoringWorkers(1, start_load=0.0, cpu_clock=busy)
    try:
        workers.take(classifier, 1024**2)  # a large one starts a worker
        await ready_for(workers, classifier, 1024**2)
        assert workers.take(classifier, workers_module.MIN_SIZE - 1) is None
        assert workers.take(classifier, workers_module.MIN_SIZE) is not None
    finally:
        await workers.close()


def test_a_verdict_survives_the_trip() -> None:
    classifier = SpamClassifier.load(learning=False, own_domains=ACCEPTED)
    raw = b"From: Bob <bob@secure-example.com>\r\nSubject: pay\r\n\r\nhttps://secure-example.com/pay\r\n"
    verdict = classifier.score(raw)
    assert verdict.lookalikes
    assert verdict_from_json(verdict_to_json(verdict)) == verdict


def _context(raw: bytes) -> StageContext:
    headers = parse_headers(raw)
    connector = ReceiveConnectorConfig(name="internet")
    session = SessionInfo("s1", Peer("192.0.2.1", 1234), connector, rights=frozenset(connector.permissions))
    return StageContext(Stage.EOD, session, data=raw, headers=headers, message=MessageView(raw, headers))


async def test_the_content_filter_through_a_worker_reports_what_it_reports_alone() -> None:
    classifier = SpamClassifier.load(learning=False)
    raw = read("spam.eml")
    workers = pool()
    try:
        await ready(workers, classifier)
        agent = ContentFilter(classifier, ContentFilterConfig(), workers)
        through = await agent.check(Stage.EOD, _context(raw))
        assert workers.load() > 0, "the worker's CPU time counts towards the load"
    finally:
        await workers.close()
    alone = await ContentFilter(classifier, ContentFilterConfig()).check(Stage.EOD, _context(raw))
    assert through == alone


async def test_a_message_whose_worker_fails_gets_451_not_250(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers_module, "RESPAWN_PAUSE", 60.0)
    classifier = SpamClassifier.load(learning=False)
    workers = pool(timeout=0.5)
    try:
        worker = await ready(workers, classifier)
        os.kill(worker.process.pid, signal.SIGSTOP)
        pipeline = Pipeline([ContentFilter(classifier, ContentFilterConfig(), workers)], timeout=10)
        result = await pipeline.run(Stage.EOD, _context(read("spam.eml")))
        assert result.outcome.reply is not None
        assert (result.outcome.reply.code, result.outcome.reply.enhanced) == (451, "4.3.0")
        # The next message is scored here while no worker may start.
        result = await pipeline.run(Stage.EOD, _context(read("spam.eml")))
        assert result.outcome.reply is None or result.outcome.reply.code != 451
        assert any(f.name.startswith("SCL_") for f in result.outcome.findings)
    finally:
        await workers.close()


async def test_a_worker_lost_while_loading_a_model_leaves_no_unheard_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(workers_module, "RESPAWN_PAUSE", 60.0)
    workers = pool()
    try:
        worker = await ready(workers, SpamClassifier.load(learning=False))
        reloaded = SpamClassifier.load(learning=False)  # a reload: the worker is sent this one
        assert workers.take(reloaded, 1) is None
        assert worker.pending, "the new model is on its way"
        os.kill(worker.process.pid, signal.SIGKILL)
        for _ in range(100):
            if not workers.running:
                break
            await asyncio.sleep(0.05)
        assert workers.running == 0
        gc.collect()
        await asyncio.sleep(0)
    finally:
        await workers.close()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
