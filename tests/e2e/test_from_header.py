"""RFC 5322 §3.6 From rules through the real gateway: reject by default, or quarantine, or off."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from edgeward.logs.tracking import search
from edgeward.quarantine.store import QuarantineStore
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e

BAD = {
    "none": b"Subject: who sent this?\r\n\r\nbody\r\n",
    "two": b"From: a@remote.test\r\nFrom: ceo@example.test\r\nSubject: two\r\n\r\nbody\r\n",
    "spaced": b"From : ceo@example.test\r\nSubject: spaced\r\n\r\nbody\r\n",
}
GOOD = b"From: a@remote.test\r\nSubject: fine\r\n\r\nbody\r\n"


def _send(port: int, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
        c.ehlo("client.test")
        c.mail("a@remote.test")
        c.rcpt("bob@example.test")
        return c.data(data)


def test_bad_from_is_rejected_by_default(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    with InProcessGateway(gateway_config(workdir, port=port, sink_port=sink.port)):
        for data in BAD.values():
            code, text = _send(port, data)
            assert (code, text[:5]) == (550, b"5.6.0")
        assert _send(port, GOOD)[0] == 250
        [delivered] = sink.wait_for(1)
    assert b"Subject: fine" in delivered
    rejects = list(search(workdir / "log", event="REJECT"))
    assert len(rejects) == 3 and all(r["detail"] == "at EOD by from-header" for r in rejects)


def test_bad_from_can_be_quarantined_or_let_through(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = gateway_config(workdir, port=port, sink_port=sink.port, agents={"from_header": "quarantine"})
    with InProcessGateway(config):
        assert [_send(port, data)[0] for data in BAD.values()] == [250, 250, 250]
    held = QuarantineStore(workdir / "quarantine").list()
    assert len(held) == 3 and {e.reason for e in held} == {"from-header"}
    port = free_port()
    # The content filter rates a message this bare as spam; what is tested is the From rule alone.
    agents = {"from_header": "off", "disabled": ["content-filter"]}
    with InProcessGateway(gateway_config(workdir, port=port, sink_port=sink.port, agents=agents)):
        reply = _send(port, BAD["none"])
        assert reply[0] == 250, reply
        assert len(sink.wait_for(1)) == 1
