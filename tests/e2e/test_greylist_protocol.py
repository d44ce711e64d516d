"""Greylisting and protocol analysis in a running gateway, with smtplib and raw sockets.

The gateway runs on the system clock, so greylisting's minimum delay is set to 1 s here: the
first attempt gets ``451 4.7.1``, the retry after the delay is delivered to smtp-sink. The
window's bounds (5 min, 24 h, expiry, auto-allow) are tested on the fake clock in
``tests/filters/test_greylist.py``. A client that talks during the greet pause is tracked with
``PROTOCOL_PREGREET``.

Greylisting needs the gateway's policy store (``Gateway.policy_store``, opened with the
connection filter); a gateway built without one leaves the agent out and the test says so.
"""

from __future__ import annotations

import smtplib
import socket
import time
from pathlib import Path

import pytest

from edgeward.logs.tracking import search
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e

MESSAGE = b"From: a@remote.test\r\nSubject: code 123456\r\nMessage-ID: <g1@remote.test>\r\n\r\nhello\r\n"


def _attempt(port: int) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
        c.ehlo("client.remote.test")
        c.mail("a@remote.test")
        code, text = c.rcpt("user@example.test")
        if code != 250:
            return code, text
        return c.data(MESSAGE)


def test_greylisting_defers_the_first_attempt_and_delivers_the_retry(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    agents = {"content_filter": {"enabled": False}, "greylist": {"enabled": True, "min_delay": 1}}
    config = gateway_config(workdir, port=port, sink_port=sink.port, agents=agents)
    with InProcessGateway(config) as gw:
        if getattr(gw.gateway, "policy_store", None) is None:
            pytest.skip("this gateway opens no policy store, so greylisting is off")
        assert _attempt(port) == (451, b"4.7.1 Greylisted, please try again later")
        time.sleep(1.5)  # the retry a real server makes later; the 1 s minimum has passed
        code, _ = _attempt(port)
        assert code == 250
        [message] = sink.wait_for(1)
    assert b"Message-ID: <g1@remote.test>" in message
    [refusal] = search(workdir / "log", event="REJECT")
    assert "GREYLIST_DEFERRED" in [f["name"] for f in refusal["findings"]]


def test_a_client_talking_before_the_banner_is_tracked_as_pregreeting(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = gateway_config(
        workdir, port=port, sink_port=sink.port, connector={"greet_pause": 2},
        agents={"content_filter": {"enabled": False}},
    )  # fmt: skip
    with (
        InProcessGateway(config),
        socket.create_connection(("127.0.0.1", port), timeout=30, source_address=("127.0.0.2", 0)) as s,
    ):
        talk = b"EHLO bot.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n"
        s.sendall(talk)  # everything at once, before the banner
        replies = b""
        while replies.count(b"\r\n354 ") == 0 and b"\r\n5" not in replies:
            chunk = s.recv(4096)
            assert chunk, replies
            replies += chunk
        s.sendall(MESSAGE + b".\r\nQUIT\r\n")
        while b"221 " not in replies:
            chunk = s.recv(4096)
            if not chunk:
                break
            replies += chunk
        assert replies.startswith(b"220 ") and b"250 2.0.0 OK queued as " in replies
        sink.wait_for(1)
    [received] = search(workdir / "log", event="RECEIVE")
    names = [f["name"] for f in received["findings"]]
    assert "PROTOCOL_PREGREET" in names and "PROTOCOL_PIPELINING" in names
