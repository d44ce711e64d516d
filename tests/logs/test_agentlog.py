"""The agent log: one line per agent decision, with Exchange's fields."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from pathlib import Path

from edgeward.config.schema import LoggingConfig
from edgeward.logs.agentlog import AgentLog, read_agent_log
from edgeward.types import Action, Finding, Reply


class Stage(enum.Enum):
    RCPT = "rcpt"


class FixedClock:
    t = datetime(2024, 5, 1, tzinfo=UTC).timestamp()

    def now(self) -> float:
        return self.t


def test_a_rejection_is_logged_with_its_findings(tmp_path: Path) -> None:
    log = AgentLog(tmp_path, LoggingConfig(), clock=FixedClock())
    log.record(
        session_id="S1",
        client_ip="203.0.113.9",
        msg_id="",
        sender="spam@example.com",
        recipients=["a@example.org", "b@example.org"],
        agent="connection_filter",
        stage=Stage.RCPT,
        action=Action.REJECT,
        reply=Reply(550, "5.7.1", "Listed at zen.example"),
        findings=[Finding("DNSBL_LISTED", "connection_filter", "zen.example 127.0.0.2", 4.0, "rcpt")],
    )
    log.record(
        session_id="S2",
        client_ip="198.51.100.1",
        msg_id="01A",
        sender="ok@example.net",
        recipients=["a@example.org"],
        agent="sender_filter",
        stage="mail",
        action="continue",
        reply=None,
        findings=[],
    )
    log.close()
    (entry, other) = list(read_agent_log(tmp_path))
    assert entry == {
        "time": "2024-05-01T00:00:00.000Z",
        "session_id": "S1",
        "client_ip": "203.0.113.9",
        "msg_id": "",
        "sender": "spam@example.com",
        "recipients": ["a@example.org", "b@example.org"],
        "num_recipients": 2,
        "agent": "connection_filter",
        "stage": "rcpt",
        "action": "reject",
        "reply": "550 5.7.1 Listed at zen.example",
        "findings": [
            {
                "name": "DNSBL_LISTED",
                "agent": "connection_filter",
                "stage": "rcpt",
                "score": 4.0,
                "detail": "zen.example 127.0.0.2",
            }
        ],
    }
    assert other["reply"] == "" and other["stage"] == "mail"
    assert [e["session_id"] for e in read_agent_log(tmp_path, agent="SENDER_FILTER")] == ["S2"]
    assert list(read_agent_log(tmp_path, since=datetime(2024, 5, 2))) == []
