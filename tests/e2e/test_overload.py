"""Overload and slow clients against a real gateway over loopback.

Connection limits per address and per /24, stress mode, eviction of idle slot holders, the
rate-limited refusal log, the byte budget, the minimum data rate and the early BDAT 552.
Every limit is configured small so the behaviour shows without load or waiting.
"""

from __future__ import annotations

import logging
import smtplib
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import InProcessGateway, free_port, gateway_config
from tests.e2e.smtpwire import Wire

pytestmark = pytest.mark.e2e

MESSAGE = b"From: <a@remote.test>\r\nSubject: through\r\nMessage-ID: <through@remote.test>\r\n\r\nhello\r\n"


@contextmanager
def _gateway(
    workdir: Path, server: dict[str, Any] | None = None, **connector: Any
) -> Iterator[InProcessGateway]:
    port = free_port()
    extra: dict[str, Any] = {}
    if server:
        extra["server"] = {
            "hostname": "mx.example.test", "data_dir": str(workdir), "user": "edgeward",
            "shutdown_grace": 5, **server,
        }  # fmt: skip
    config = gateway_config(workdir, port=port, connector=connector, **extra)
    with InProcessGateway(config) as gw:
        yield gw


def _port(gw: InProcessGateway) -> int:
    return int(gw.config.receive_connectors[0].bindings[0].rsplit(":", 1)[1])


def _send(port: int, source: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30) as c:
        c.ehlo("normal.remote.test")
        c.mail("a@remote.test")
        c.rcpt("b@example.test")
        return c.data(MESSAGE)


def test_connections_are_limited_per_slash_24(workdir: Path) -> None:
    with _gateway(workdir, max_connections_per_network=2) as gw, ExitStack() as stack:
        port = _port(gw)
        held = [stack.enter_context(Wire(port, f"127.0.5.{i}")) for i in (1, 2)]
        for w in held:
            assert w.reply().startswith("220")
        with Wire(port, "127.0.5.3") as third:
            assert third.reply().startswith("421 4.3.2")
        # Another network is not affected.
        assert _send(port, "127.0.6.1")[0] == 250


def test_a_full_connector_evicts_the_longest_idle_session_for_a_new_client(workdir: Path) -> None:
    with _gateway(workdir, max_connections=3) as gw, ExitStack() as stack:
        port = _port(gw)
        idle = [stack.enter_context(Wire(port, "127.0.7.1")) for _ in range(3)]
        for w in idle:
            assert w.reply().startswith("220")
            assert w.command("EHLO idle.remote.test").startswith("250")
        normal = stack.enter_context(Wire(port, "127.0.8.1"))
        normal.start_mail()
        assert normal.command("DATA").startswith("354")
        normal.send(MESSAGE + b".\r\n")
        assert normal.reply().startswith("250")
        assert idle[0].reply().startswith("421 4.7.0")
        assert idle[0].closed_by_server()
        # The others still hold their slots and work.
        assert idle[1].command("NOOP").startswith("250")
        assert idle[2].command("NOOP").startswith("250")
        # Full again, and the address that holds the most slots cannot push the others out.
        with Wire(port, "127.0.7.1") as more:
            assert more.reply().startswith("421 4.3.2")
        figures = gw.gateway.listener.slots.figures if gw.gateway else None
        assert figures is not None and figures.evicted == 1


def test_under_stress_idle_timeout_and_error_limit_shrink(workdir: Path) -> None:
    with _gateway(
        workdir, max_connections=8, stress_threshold=0.125, stress_idle_timeout=5, idle_timeout=120
    ) as gw:
        port = _port(gw)
        with Wire(port, "127.0.9.1") as first, Wire(port, "127.0.9.2") as second:
            assert first.reply().startswith("220")
            # The second arrives while one slot of eight is held: stress, one bad command allowed.
            assert second.reply().startswith("220")
            assert second.command("FOO").startswith("500")
            assert second.command("BAR").startswith("421 4.7.0")
            with Wire(port, "127.0.9.3") as chatty:
                # Junk commands between messages: one is allowed under stress.
                assert chatty.reply().startswith("220")
                assert chatty.command("NOOP").startswith("250")
                assert chatty.command("RSET").startswith("421 4.7.0")
            # An idle session is closed after the stress timeout, not the configured 120 s.
            assert first.reply().startswith("421 4.4.2")


def test_refusals_are_logged_through_a_rate_limit(workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with _gateway(workdir, max_connections_per_source=1) as gw, Wire(_port(gw), "127.0.10.1") as held:
        assert held.reply().startswith("220")
        with caplog.at_level(logging.WARNING, logger="edgeward.listener"):
            for _ in range(30):
                with Wire(_port(gw), "127.0.10.1") as refused:
                    assert refused.reply().startswith("421 4.3.2")
        assert gw.gateway is not None
        lines = [r for r in caplog.records if "connection limit" in r.getMessage()]
        assert len(lines) == gw.gateway.listener.log_limit.burst
        assert gw.gateway.listener.log_limit.suppressed() == 30 - len(lines)


def test_the_byte_budget_refuses_at_mail_and_after_data_and_is_given_back(workdir: Path) -> None:
    with _gateway(workdir, server={"max_bytes_in_flight": 2000}) as gw:
        port = _port(gw)
        with Wire(port, "127.0.11.1") as a, Wire(port, "127.0.11.2") as b:
            a.start_mail(size=1500)
            assert b.reply().startswith("220")
            assert b.command("EHLO b.remote.test").startswith("250")
            assert b.command("MAIL FROM:<b@remote.test> SIZE=1000").startswith("452 4.3.1")
            # No SIZE: the connector's max_message_size (10 MB) is what must fit.
            assert b.command("MAIL FROM:<b@remote.test>").startswith("452 4.3.1")
            assert a.command("RSET").startswith("250")
            assert b.command("MAIL FROM:<b@remote.test> SIZE=100").startswith("250")
            assert b.command("RCPT TO:<c@example.test>").startswith("250")
            assert b.command("DATA").startswith("354")
            # More than it declared, and more than the budget has: refused, not 250.
            head = b"From: <a@remote.test>\r\nSubject: big\r\n\r\n"
            b.send(head + b"x" * 78 + b"\r\n" + (b"y" * 98 + b"\r\n") * 30 + b".\r\n")
            assert b.reply().startswith("452 4.3.1")
            assert b.command("MAIL FROM:<b@remote.test> SIZE=100").startswith("250")
            assert b.command("RCPT TO:<c@example.test>").startswith("250")
            assert b.command("DATA").startswith("354")
            b.send(MESSAGE + b".\r\n")
            assert b.reply().startswith("250")
        assert gw.gateway is not None and gw.gateway.receiving is not None
        budget = gw.gateway.receiving.budget
        # Every reservation was given back when its session ended.
        deadline = time.monotonic() + 10
        while budget.in_use and time.monotonic() < deadline:
            time.sleep(0.05)
        assert budget.in_use == 0


def test_a_client_below_the_minimum_data_rate_is_cut(workdir: Path) -> None:
    with _gateway(workdir, min_data_rate=1000, min_data_rate_grace=0.5) as gw:
        port = _port(gw)
        with Wire(port, "127.0.12.1") as slow:
            slow.start_mail()
            assert slow.command("DATA").startswith("354")
            slow.sock.settimeout(0.1)
            reply = ""
            for _ in range(600):  # one byte per 0.1 s: far below 1000 bytes/s
                slow.send(b"x")
                try:
                    reply = slow.reply()
                    break
                except TimeoutError:
                    continue
            assert reply.startswith("421 4.4.2"), reply
        # A client sending at its normal pace is not affected.
        assert _send(port, "127.0.12.2")[0] == 250


def test_a_bdat_chunk_over_the_size_limit_gets_552_before_its_bytes(workdir: Path) -> None:
    with _gateway(workdir, max_message_size=1000) as gw, Wire(_port(gw), "127.0.13.1") as w:
        w.start_mail()
        # The reply comes with no chunk byte sent: the size in the command is enough.
        assert w.command("BDAT 5000 LAST").startswith("552 5.3.4")
        # The bytes that follow are still the chunk's, read and dropped, never commands.
        w.send(b"NOOP\r\n" * 833 + b"xx")
        assert w.command("NOOP").startswith("250")
        assert w.command("MAIL FROM:<a@remote.test>").startswith("250")
