"""The agent log: one JSON line each time an agent acts on a session or message.

Modelled on Exchange's agent log (AGENTLOG, §7.1 of the reference): timestamp, session id,
remote endpoint, message id, P1 sender, recipients and their count, agent, event (our SMTP
stage), action, SMTP response, and reason / reason data (our named findings with their detail).
It answers "why was this rejected?" for every decision, since every decision carries findings.

Security: only what the agents concluded is logged, never message content or credentials.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from edgeward.config.schema import LoggingConfig
from edgeward.logs.rotating import LogWriter, iso_time, read_entries, utc_timestamp
from edgeward.ports import Clock
from edgeward.types import Action, Finding, Reply

__all__ = ["AgentLog", "read_agent_log"]

LOG_NAME = "agent"


def _name(value: object) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value) if isinstance(value.value, str) else value.name.lower()
    return str(value)


class AgentLog(LogWriter):
    """Writes agent decisions to ``<dir>/agent.log`` (rotated per ``LoggingConfig``)."""

    def __init__(
        self, directory: Path, cfg: LoggingConfig, *, clock: Clock | None = None, name: str = LOG_NAME
    ) -> None:
        super().__init__(directory, cfg, clock=clock, name=name)

    def record(
        self,
        *,
        session_id: str,
        client_ip: str,
        msg_id: str,
        sender: str,
        recipients: Iterable[str],
        agent: str,
        stage: str | enum.Enum,
        action: Action | str,
        reply: Reply | str | None,
        findings: Iterable[Finding],
    ) -> None:
        rcpts = list(recipients)
        self._log.write(
            {
                "time": iso_time(self._clock.now()),
                "session_id": session_id,
                "client_ip": client_ip,
                "msg_id": msg_id,
                "sender": sender,
                "recipients": rcpts,
                "num_recipients": len(rcpts),
                "agent": agent,
                "stage": _name(stage),
                "action": _name(action),
                "reply": "" if reply is None else str(reply),
                "findings": [f.to_dict() for f in findings],
            }
        )


def read_agent_log(
    directory: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    agent: str | None = None,
    name: str = LOG_NAME,
) -> Iterator[dict[str, Any]]:
    """Entries of the agent log in order, optionally by time window and agent (Get-AgentLog)."""
    since_ts = utc_timestamp(since) if since is not None else None
    since_s = iso_time(since_ts) if since_ts is not None else None
    until_s = iso_time(utc_timestamp(until)) if until is not None else None
    for entry in read_entries(directory, name, since=since_ts):
        when = str(entry.get("time", ""))
        if (since_s is not None and when < since_s) or (until_s is not None and when > until_s):
            continue
        if agent is not None and str(entry.get("agent", "")).lower() != agent.lower():
            continue
        yield entry
