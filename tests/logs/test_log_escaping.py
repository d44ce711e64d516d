"""Every log writer escapes the characters JSON leaves raw: DEL, C1, line separators, bidi overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeward.config.schema import LoggingConfig
from edgeward.logs.agentlog import AgentLog
from edgeward.logs.protocol import ProtocolLog
from edgeward.logs.rotating import encode_entry
from edgeward.logs.tracking import TrackingLog
from edgeward.types import Action, Finding

# DEL, CSI (C1), OSC (C1), LINE SEPARATOR, RIGHT-TO-LEFT OVERRIDE, a lone surrogate, ESC, NUL
HOSTILE = "a\x7fb\x9b31m\x9d0;title\x07\u2028\u202eevil\udcff\x1b[2J\x00z"
RAW = [b"\x7f", b"\xc2\x9b", b"\xc2\x9d", b"\xe2\x80\xa8", b"\xe2\x80\xae", b"\x1b", b"\x00", b"\x07"]


@pytest.mark.parametrize("char", ["\x7f", "\x80", "\x9f", "\u2028", "\u2029", "\u202a", "\u2066", "\ud800"])
def test_each_unsafe_character_is_escaped_and_decodes_back(char: str) -> None:
    line = encode_entry({"v": f"<{char}>"})
    assert char not in line and line.isascii()
    assert json.loads(line) == {"v": f"<{char}>"}


def test_printable_text_is_left_as_written() -> None:
    assert encode_entry({"v": "Grüße, 日本"}) == '{"v":"Grüße, 日本"}\n'


def _assert_clean(path: Path) -> None:
    data = path.read_bytes()
    for raw in RAW:
        assert raw not in data, raw
    assert all(isinstance(json.loads(line), dict) for line in data.decode("utf-8").splitlines())


def test_tracking_agent_and_protocol_logs_escape_hostile_text(tmp_path: Path) -> None:
    cfg = LoggingConfig()
    tracking = TrackingLog(tmp_path, cfg)
    tracking.event("REJECT", msg_id="", sender=HOSTILE, recipients=[HOSTILE], reply=HOSTILE)
    tracking.close()
    agent = AgentLog(tmp_path, cfg)
    agent.record(
        session_id="S", client_ip="192.0.2.1", msg_id="", sender=HOSTILE, recipients=[HOSTILE],
        agent="a", stage="mail", action=Action.REJECT, reply=HOSTILE,
        findings=[Finding("X", "a", HOSTILE)],
    )  # fmt: skip
    agent.close()
    protocol = ProtocolLog(tmp_path, cfg, "c")
    protocol.session("S", "192.0.2.1").info(HOSTILE)
    protocol.close()
    for name in ("tracking.log", "agent.log", "protocol-c.log"):
        _assert_clean(tmp_path / name)
    [entry] = [json.loads(line) for line in (tmp_path / "tracking.log").read_text().splitlines()]
    assert entry["sender"] == HOSTILE and entry["recipients"] == [HOSTILE]
