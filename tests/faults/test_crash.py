"""A part of the gateway failing: the classifier, its learning database, the state store.

The AUTH state database, unusable at start or failing while the gateway runs, gives
``454 4.7.0`` to AUTH and nothing else; a repaired file is used without a restart.

What must hold (DESIGN §3, §6): mail the failed part should have judged gets ``451 4.3.0``,
never ``250``; the failure is logged under the part's name; the gateway keeps serving, so
sessions, other mail and deliveries go on.
"""

from __future__ import annotations

import base64
import logging
import smtplib
import sqlite3
from pathlib import Path

import pytest

from edgeward.auth.users import UserStore
from edgeward.config.schema import ContentFilterConfig, ReceiveConnectorConfig
from edgeward.content.classifier import SpamClassifier
from edgeward.filters.agents.content import UnloadedContentFilter
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.pipeline import Pipeline
from edgeward.headers import parse_headers
from edgeward.state.sqlite import StateStore
from edgeward.types import Peer
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config, insecure_context

pytestmark = pytest.mark.e2e

MESSAGE = b"From: a@remote.test\r\nSubject: judged\r\nMessage-ID: <judged@remote.test>\r\n\r\nhello\r\n"


def _transaction(port: int) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
        c.ehlo("client.remote.test")
        assert c.mail("a@remote.test")[0] == 250
        assert c.rcpt("b@example.test")[0] == 250
        try:
            return c.data(MESSAGE)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error


def _assert_451_by_name(port: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        for _ in range(2):  # the first failure does not break the next session
            code, text = _transaction(port)
            assert (code, text[:5]) == (451, b"4.3.0")
    assert any("content-filter" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("broken", ["learning-database", "model-file"])
def test_a_classifier_that_cannot_load_answers_451_and_the_gateway_serves(
    workdir: Path, sink: SmtpSink, caplog: pytest.LogCaptureFixture, broken: str
) -> None:
    (workdir / "state").mkdir(mode=0o700)
    extra = {}
    if broken == "learning-database":
        (workdir / "state" / "content-model.db").write_bytes(b"not sqlite " * 1000)
    else:
        (workdir / "model.npz").write_bytes(b"\x93NUMPY garbage")
        extra = {"agents": {"content_filter": {"model": str(workdir / "model.npz")}}}
    port = free_port()
    with InProcessGateway(gateway_config(workdir, port=port, sink_port=sink.port, **extra)):
        _assert_451_by_name(port, caplog)
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
            assert c.noop()[0] == 250
    assert sink.messages() == []


async def test_a_repaired_classifier_is_picked_up_without_a_restart() -> None:
    attempts: list[int] = []

    def load() -> SpamClassifier:
        attempts.append(1)
        if len(attempts) == 1:
            raise sqlite3.DatabaseError("database is locked")
        return SpamClassifier.load()

    agent = UnloadedContentFilter(load, ContentFilterConfig(), "file is not a database", retry_interval=0)
    pipeline = Pipeline([agent], timeout=10)
    connector = ReceiveConnectorConfig(name="internet")
    session = SessionInfo("s1", Peer("192.0.2.1", 1234), connector, rights=frozenset(connector.permissions))
    ctx = StageContext(Stage.EOD, session, data=MESSAGE, headers=parse_headers(MESSAGE))
    first = await pipeline.run(Stage.EOD, ctx)
    assert first.outcome.reply is not None and first.outcome.reply.code == 451
    second = await pipeline.run(Stage.EOD, ctx)
    assert second.outcome.reply is None
    assert any(f.name.startswith("SCL_") for f in second.outcome.findings), "the message was rated"
    assert len(attempts) == 2


def test_a_corrupt_state_database_at_start_fails_only_auth_until_repaired(
    workdir: Path, sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    state = workdir / "state"
    state.mkdir(mode=0o700)
    (state / "edgeward.db").write_bytes(b"not sqlite " * 1000)
    port = free_port()
    connector = {"auth_mechanisms": ["PLAIN"], "permission_groups": ["anonymous", "users"],
                 "auth_tarpit_interval": 0}  # fmt: skip
    config = gateway_config(workdir, port=port, sink_port=sink.port, connector=connector)
    with caplog.at_level(logging.ERROR), InProcessGateway(config):
        assert any("AUTH is unavailable" in r.getMessage() and "edgeward.db" in r.getMessage()
                   for r in caplog.records)  # fmt: skip
        auth, mail = _auth_session(port)
        assert (auth[0], auth[1][:5]) == (454, b"4.7.0")
        assert mail[0] == 250, "mail that needs no AUTH is still taken"
        # The administrator replaces the file: the running gateway uses it at the next AUTH.
        (state / "edgeward.db").unlink()
        repaired = StateStore(state / "edgeward.db")
        repaired.connect()
        UserStore(repaired).add("alice@example.test", "correct horse")
        repaired.close()
        auth, mail = _auth_session(port)
        assert auth[0] == 235 and mail[0] == 250


def _auth_session(port: int) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
    """AUTH as alice after STARTTLS, then a MAIL as whoever the session then is: both replies."""
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
        c.ehlo("client.remote.test")
        c.starttls(context=insecure_context())
        c.ehlo("client.remote.test")
        auth = c.docmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0correct horse").decode())
        return auth, c.mail("alice@example.test" if auth[0] == 235 else "a@remote.test")


@pytest.mark.parametrize("fault", ["held-by-a-writer", "corrupted-while-running"])
def test_a_failing_state_store_never_authenticates_wrongly_and_the_session_goes_on(
    workdir: Path, sink: SmtpSink, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    state = workdir / "state"
    state.mkdir(mode=0o700)
    store = StateStore(state / "edgeward.db")
    store.connect()
    UserStore(store).add("alice@example.test", "correct horse")
    store.close()
    port = free_port()
    connector = {"auth_mechanisms": ["PLAIN"], "permission_groups": ["anonymous", "users"],
                 "auth_tarpit_interval": 0}  # fmt: skip
    with InProcessGateway(gateway_config(workdir, port=port, sink_port=sink.port, connector=connector)):
        assert _auth_session(port)[0][0] == 235
        if fault == "held-by-a-writer":
            writer = sqlite3.connect(state / "edgeward.db", isolation_level=None)
            writer.execute("BEGIN EXCLUSIVE")  # WAL: readers go on, writers wait
            try:
                auth, mail = _auth_session(port)
            finally:
                writer.execute("ROLLBACK")
                writer.close()
            assert auth[0] == 235
        else:
            for part in state.glob("edgeward.db*"):  # the account database, not the policy store
                part.write_bytes(b"not sqlite " * 4000)
            with caplog.at_level(logging.ERROR):
                auth, mail = _auth_session(port)
            # RFC 4954 §6: a temporary failure, never a success and never "wrong password",
            # which would count towards the lockout of a user who did nothing wrong.
            assert (auth[0], auth[1][:5]) == (454, b"4.7.0")
            assert any("user store" in r.getMessage() for r in caplog.records)
        assert mail[0] == 250
