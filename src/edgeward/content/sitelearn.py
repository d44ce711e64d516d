"""The learning worker: teaches the live model from the site's own mail, off the SMTP path.

This module owns :class:`SiteLearner`, a bounded queue and one worker task. The policy layer
(``filters.agents.site_learning``) decides *what* is worth learning and hands it over with
:meth:`SiteLearner.submit`, which never waits: a full queue drops the job and counts it, because
a missed lesson costs nothing and a delayed ``250`` costs the sender's connection. The worker
does two kinds of job:

* :class:`Remember`: a local user's outbound message. Its Message-ID goes under ``sent:<id>``
  and each outside recipient under ``corr:<sender>|<recipient>`` in the policy store, with their
  own TTLs, so a later reply or a correspondent's mail can be recognised.
* :class:`Lesson`: messages to learn as ham or spam, by path (``reply``, ``correspondent``,
  ``report``, ``trap``). A report is a local user's message carrying the spam as an attachment
  (:func:`reported_messages`); the report itself is never learned.

Learning runs in one dedicated thread holding its own connection to the model store (SQLite
connections belong to the thread that made them), through :meth:`SpamClassifier.learn`'s
optimistic versioning. The gateway's own classifier sees the new version within its
``refresh_interval``, as it sees ``edgeward spam learn``: no restart, no SIGHUP.

GTUBE is never learned. The classifier scores it SCL 9 by rule, so the model gains nothing, and
the words around the test string are whatever the tester typed (usually an ordinary message):
learning them as spam would teach the model that ordinary words are spam.

Every lesson is counted in the model store's ledger (path, ham/spam, when) and the worker
writes its gauges there (queue length, dropped, skipped) for ``edgeward spam status``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from edgeward.content.analyze import GTUBE
from edgeward.content.classifier import SpamClassifier
from edgeward.content.state import SqliteModelStateStore
from edgeward.ports import PolicyStore, PolicyStoreError

__all__ = ["PATHS", "Lesson", "Remember", "SiteLearner", "reported_messages"]

log = logging.getLogger("edgeward.learning")

# Every path a lesson can come by, as `spam status` lists them.
PATHS = ("reply", "correspondent", "release", "report", "trap", "manual")
SENT_PREFIX = "sent:"
CORRESPONDENT_PREFIX = "corr:"
# A report with more attachments than this is someone's archive, not a report.
MAX_REPORTED = 20
MAX_CORRESPONDENTS = 100
# Lessons hold whole messages: the queue is bounded in bytes as well as in jobs.
MAX_PENDING_BYTES = 64 * 1024 * 1024


def sent_key(message_id: str) -> str:
    return SENT_PREFIX + message_id.strip().strip("<>")


def correspondent_key(local: str, other: str) -> str:
    return f"{CORRESPONDENT_PREFIX}{local.lower()}|{other.lower()}"


@dataclass(frozen=True, slots=True)
class Remember:
    """A local user's outbound message: who sent it, its Message-ID, its outside recipients."""

    sender: str
    message_id: str
    recipients: tuple[str, ...]
    sent_ttl: float
    correspondent_ttl: float


@dataclass(frozen=True, slots=True)
class Lesson:
    """A message to learn: ``raw`` as ham or spam, by ``path`` (a report carries its spam)."""

    path: str
    raw: bytes
    is_spam: bool


def reported_messages(raw: bytes) -> list[bytes]:
    """The messages a spam report carries, each as bytes; the report's own text is not one.

    A forwarded message is an attached ``message/rfc822`` part. An ARF report (RFC 5965) is a
    ``multipart/report; report-type=feedback-report`` whose third part is ``message/rfc822``
    or, when the reporter kept only the header, ``text/rfc822-headers``.
    """
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    arf = _is_arf(parsed)
    found: list[bytes] = []
    # Down the multipart tree, but not into an attached message: a forward of a forward is one
    # report of the outer message, not two.
    stack = list(reversed(_children(parsed)))
    depth_budget = 200  # parts visited at most: a report is small
    while stack and len(found) < MAX_REPORTED and depth_budget > 0:
        depth_budget -= 1
        part = stack.pop()
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found.append(inner[0].as_bytes())
        elif kind == "text/rfc822-headers" and arf:
            headers = part.get_payload(decode=True)
            if isinstance(headers, bytes) and headers.strip():
                found.append(headers.rstrip(b"\r\n") + b"\r\n\r\n")
        elif part.is_multipart():
            stack.extend(reversed(_children(part)))
    return found


def _children(message: Message) -> list[Message]:
    payload = message.get_payload() if message.is_multipart() else None
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _is_arf(message: Message) -> bool:
    return (
        message.get_content_type() == "multipart/report"
        and (message.get_param("report-type") or "") == "feedback-report"
    )


class SiteLearner:
    """The bounded queue and the worker that learns from it; one per receiving gateway."""

    def __init__(
        self,
        state_path: Path,
        model_path: Path | None = None,
        *,
        policy_store: PolicyStore | None = None,
        capacity: int = 1000,
        max_bytes: int = MAX_PENDING_BYTES,
    ) -> None:
        self.state_path = state_path
        self.model_path = model_path
        self.policy_store = policy_store
        self._queue: asyncio.Queue[Remember | Lesson] = asyncio.Queue(maxsize=capacity)
        self.max_bytes = max_bytes
        self._bytes = 0  # message bytes waiting in the queue
        self.dropped = 0
        self.skipped = 0
        # One thread, always the same: it owns the model store's SQLite connection.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgeward-learning")
        self._classifier: SpamClassifier | None = None
        self._store: SqliteModelStateStore | None = None

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def submit(self, job: Remember | Lesson) -> bool:
        """Queue ``job`` without waiting; False (and counted) when the queue is full."""
        size = len(job.raw) if isinstance(job, Lesson) else 0
        try:
            if self._bytes + size > self.max_bytes:
                raise asyncio.QueueFull
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("learning queue full (%d waiting): %d job(s) dropped so far",
                            self._queue.qsize(), self.dropped)  # fmt: skip
            return False
        self._bytes += size
        return True

    async def run(self) -> None:
        """The worker: one job at a time, until cancelled; a failing job is logged and skipped."""
        loop = asyncio.get_running_loop()
        while True:
            job = await self._queue.get()
            try:
                if isinstance(job, Remember):
                    await self._remember(job)
                else:
                    gauges = {"pending": self._queue.qsize(), "dropped": self.dropped}
                    await loop.run_in_executor(self._executor, self._learn, job, gauges)
            except Exception:
                log.exception("learning: a %s job failed", type(job).__name__.lower())
            finally:
                if isinstance(job, Lesson):
                    self._bytes -= len(job.raw)
                self._queue.task_done()

    async def drain(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the queue to empty (at shutdown); whether it did."""
        try:
            async with asyncio.timeout(seconds):
                await self._queue.join()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop the thread and close its store; call after the worker task was cancelled."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_store)
        self._executor.shutdown(wait=True)

    async def _remember(self, job: Remember) -> None:
        store = self.policy_store
        if store is None:
            return
        try:
            if job.message_id:
                await store.set(sent_key(job.message_id), job.sender.lower(), ttl=job.sent_ttl)
            for rcpt in job.recipients[:MAX_CORRESPONDENTS]:
                key = correspondent_key(job.sender, rcpt)
                await store.set(key, str(int(time.time())), ttl=job.correspondent_ttl)
        except PolicyStoreError as exc:
            log.warning("learning: could not remember an outbound message of %s: %s", job.sender, exc)

    def _learn(self, job: Lesson, gauges: dict[str, int]) -> None:
        """In the learning thread: teach the model, count the lesson, write the gauges."""
        classifier, store = self._open()
        messages = reported_messages(job.raw) if job.path == "report" else [job.raw]
        if job.path == "report" and not messages:
            log.warning("learning: a spam report carried no attached message; nothing learned")
        now = time.time()
        taught = 0
        for raw in messages:
            if GTUBE in raw:
                self.skipped += 1
                continue
            classifier.learn(raw, job.is_spam)
            taught += 1
        if taught:
            store.record_learned(job.path, job.is_spam, now, taught)
            log.info("learning: %d message(s) learned as %s (%s), model version %d",
                     taught, "spam" if job.is_spam else "ham", job.path, classifier.version)  # fmt: skip
        store.set_gauges({**gauges, "skipped": self.skipped}, now)

    def _open(self) -> tuple[SpamClassifier, SqliteModelStateStore]:
        if self._classifier is None or self._store is None:
            store = SqliteModelStateStore(self.state_path)
            self._classifier = SpamClassifier.load(self.model_path, store=store, learning=True)
            self._store = store
        return self._classifier, self._store

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store, self._classifier = None, None
