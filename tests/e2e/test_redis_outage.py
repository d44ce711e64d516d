"""Each agent that reads the policy store, over SMTP, when the Redis behind it stops mid-run.

One gateway per agent (every other agent of the store disabled), on a real ``redis-server`` the
test starts on loopback. A first message while Redis is up shows the store is in use; then
Redis is stopped and a second message shows the behaviour the architecture documents for that
agent's outage, and that it was logged at WARNING or above:

- fail closed (``451 4.3.0``, ``POLICY_STORE_TEMPERROR`` tracked with the refusal): the list
  lookups that decide a refusal, the sender filter at MAIL, the recipient filter and the
  recipients' blocked senders at RCPT: "unknown" must not pass as "not blocked";
- fail open (accepted, a ``*_TEMPERROR`` finding tracked with the message): the connection
  filter's IP lists, rate limits, greylisting and sender reputation, whose outage must not stop
  all mail; the finding lets the score table and ``track why`` see that they could not answer.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgeward.config.schema import AGENT_NAMES, ALWAYS_ON_AGENTS
from edgeward.logs.tracking import search
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config
from tests.redisserver import REDIS_SERVER, RedisServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed (install-test-deps.sh)"),
]


@dataclass(frozen=True)
class Case:
    agent: str
    settings: dict[str, Any]
    before: int  # the first message's outcome while Redis is up
    during: tuple[int, str]  # the reply and enhanced code while it is down
    stage: str  # where a refusal is tracked ("" for an accepted message)
    finding: str


CASES = [
    Case("sender-filter", {}, 250, (451, "4.3.0"), "at MAIL", "POLICY_STORE_TEMPERROR"),
    Case("recipient-filter", {}, 250, (451, "4.3.0"), "at RCPT", "POLICY_STORE_TEMPERROR"),
    Case("safe-senders", {}, 250, (451, "4.3.0"), "at RCPT", "POLICY_STORE_TEMPERROR"),
    Case("connection-filter", {}, 250, (250, "2.0.0"), "", "IP_LIST_TEMPERROR"),
    Case("rate-limits", {"rate_limits": {"messages_per_ip": 100}}, 250, (250, "2.0.0"), "", "RATE_TEMPERROR"),
    # Greylisted while Redis answers; let through with a finding when it cannot.
    Case("greylisting", {"greylist": {"enabled": True}}, 451, (250, "2.0.0"), "", "GREYLIST_TEMPERROR"),
    Case("sender-reputation", {}, 250, (250, "2.0.0"), "", "REPUTATION_TEMPERROR"),
]


@pytest.fixture
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir).start()
    yield server
    server.stop()


def _send(port: int, subject: str) -> tuple[int, str]:
    """A whole message; the first refusal's code and enhanced code, or the final 250's."""
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
        c.ehlo("client.remote.test")
        for code, text in (c.mail("friend@remote.test"), c.rcpt("user@example.test")):
            if code != 250:
                return code, text.decode().split()[0]
        code, text = c.data(f"From: friend@remote.test\r\nSubject: {subject}\r\n\r\nhello\r\n".encode())
        return code, text.decode().split()[0]


@pytest.mark.parametrize("case", CASES, ids=[c.agent for c in CASES])
def test_an_agent_keeps_its_documented_outage_behaviour_and_says_so(
    case: Case,
    workdir: Path,
    sink: SmtpSink,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    disabled = [n for n in AGENT_NAMES if n != case.agent and n not in ALWAYS_ON_AGENTS]
    config = gateway_config(
        workdir,
        port=port,
        sink_port=sink.port,
        policy_store={"backend": "redis", "url": redis_server.url, "timeout": 1},
        agents={"disabled": disabled, **case.settings},
    )
    with InProcessGateway(config):
        assert _send(port, "before")[0] == case.before
        redis_server.stop()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert _send(port, "during") == case.during
        loud = [r for r in caplog.records if r.levelno >= logging.WARNING and case.agent in r.getMessage()]
        assert loud, f"the outage of the store {case.agent} reads was not logged"
    event = list(search(workdir / "log", event="REJECT" if case.stage else "RECEIVE"))[-1]
    if case.stage:
        assert (event["detail"], event["decided_by"]) == (case.stage, f"agent {case.agent}")
    assert case.finding in [f["name"] for f in event["findings"]]
