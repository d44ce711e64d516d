"""The gateway's logs: message tracking, agent decisions and SMTP protocol, as rotated JSON lines.

Each log is one ``RotatingJsonLog`` under ``logging.dir``; see ``logs.rotating`` for rotation,
retention and why lines are not fsync'd.
"""

from edgeward.logs.agentlog import AgentLog
from edgeward.logs.protocol import ProtocolLog, ProtocolSession, redact
from edgeward.logs.rotating import RotatingJsonLog
from edgeward.logs.tracking import TrackingEvent, TrackingLog, search

__all__ = [
    "AgentLog",
    "ProtocolLog",
    "ProtocolSession",
    "RotatingJsonLog",
    "TrackingEvent",
    "TrackingLog",
    "redact",
    "search",
]
