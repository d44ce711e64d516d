"""The syslog channel against a real rsyslog (UDP, TCP, a unix socket), checked strictly too.

rsyslog's RFC 5424 parser must take every message (``protocol-version`` 1); its structured data
and the raw bytes a datagram socket of the test receives are also parsed by the strict RFC 5424
parser of ``tests/notify/rfc5424.py``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeward.config.notify import SyslogConfig
from edgeward.notify.events import Event
from edgeward.notify.limiter import Batch
from edgeward.notify.syslog import MAX_DATAGRAM, SyslogChannel, escape_param, format_message
from tests.notify import rfc5424
from tests.notify.rsyslog import RSYSLOGD, Rsyslog, start_rsyslog

NASTY = 'Trojan"X\\Y]Z\r\nInjected: 1 [evil@1 a="b"]'


def _batch(count: int = 1, **fields: object) -> Batch:
    event = Event.make("virus", "warning", "Eicar found", signature=NASTY, sender="a@b.test", **fields)
    batch = Batch(event.key)
    for _ in range(count):
        batch.add(event)
    return batch


def _format(batch: Batch, limit: int | None = None) -> bytes:
    return format_message(batch, facility=2, hostname="mx.example.test", app_name="edgeward",
                          sd_id="edgeward@32473", procid=7, limit=limit)  # fmt: skip


def test_escape_param() -> None:
    assert escape_param('a"b\\c]d') == 'a\\"b\\\\c\\]d'


def test_message_is_strict_rfc5424() -> None:
    data = _format(_batch(3, part="x.zip!eicar.com"))
    assert b"\r" not in data and b"\n" not in data
    msg = rfc5424.parse(data)
    assert (msg.facility, msg.severity) == (2, 4)  # mail, warning
    head = (msg.hostname, msg.app_name, msg.procid, msg.msgid)
    assert head == ("mx.example.test", "edgeward", "7", "virus")
    params = msg.sd["edgeward@32473"]
    # The value arrives whole, its CR LF flattened when the event was made.
    assert params["signature"] == 'Trojan"X\\Y]Z Injected: 1 [evil@1 a="b"]'
    assert params["count"] == "3" and params["part"] == "x.zip!eicar.com"
    assert msg.msg == "Eicar found (and 2 more)"
    assert list(msg.sd) == ["edgeward@32473"]  # the "[evil@1 ...]" in a value made no element


def test_datagram_limit_keeps_the_frame_parseable() -> None:
    batch = _batch(1, detail="x" * 5000, other="y" * 3000)
    data = _format(batch, MAX_DATAGRAM)
    assert len(data) <= MAX_DATAGRAM
    msg = rfc5424.parse(data)
    assert msg.sd["edgeward@32473"]["count"] == "1"


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    if RSYSLOGD is None:
        pytest.skip("rsyslogd is not installed (scripts/install-test-deps.sh)")
    server = start_rsyslog(tmp_path_factory.mktemp("rsyslog"))
    yield server
    server.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp", "unix"])
async def test_rsyslog_parses_what_we_send(rsyslog: Rsyslog, transport: str) -> None:
    port = rsyslog.udp_port if transport == "udp" else rsyslog.tcp_port
    address = str(rsyslog.unix_socket) if transport == "unix" else f"127.0.0.1:{port}"
    cfg = SyslogConfig(enabled=True, transport=transport, address=address, facility="local3")  # type: ignore[arg-type]
    channel = SyslogChannel(cfg, "mx.example.test")
    before = len(rsyslog.lines())
    try:
        for n in range(3):  # several on one TCP connection: octet counting frames each
            await channel.send(_batch(n + 1))
    finally:
        await channel.close()
    got = (await asyncio.to_thread(rsyslog.wait_for, before + 3))[before:]
    assert [g["input"] for g in got] == [f"im{transport}".replace("imunix", "imuxsock")] * 3
    for n, line in enumerate(got):
        assert line["version"] == "1"  # rsyslog's RFC 5424 parser took it, not the legacy one
        assert (line["msgid"], line["app"], line["host"]) == ("virus", "edgeward", "mx.example.test")
        assert (line["facility"], line["severity"]) == ("local3", "warning")
        sd, _ = rfc5424.parse_sd(line["sd"].encode())
        assert sd["edgeward@32473"]["signature"] == 'Trojan"X\\Y]Z Injected: 1 [evil@1 a="b"]'
        assert sd["edgeward@32473"]["count"] == str(n + 1)
        assert line["msg"].lstrip("\ufeff").startswith("Eicar found")


async def test_tcp_reconnects_after_the_receiver_restarts(tmp_path: Path) -> None:
    if RSYSLOGD is None:
        pytest.skip("rsyslogd is not installed")
    server = start_rsyslog(tmp_path)
    cfg = SyslogConfig(enabled=True, transport="tcp", address=f"127.0.0.1:{server.tcp_port}")
    channel = SyslogChannel(cfg, "mx.example.test")
    try:
        await channel.send(_batch())
        await asyncio.to_thread(server.wait_for, 1)
        server.stop()
        restarted = start_rsyslog_on(tmp_path, server)
        # Writes into the dead connection may seem to succeed until the reset arrives; the
        # channel must then connect again by itself.
        for _ in range(50):
            await channel.send(_batch())
            if restarted.lines():
                break
            await asyncio.sleep(0.1)
        lines = restarted.lines()
        assert lines and all(line["version"] == "1" for line in lines)
    finally:
        await channel.close()
        server.stop()


def start_rsyslog_on(root: Path, old: Rsyslog) -> Rsyslog:
    """A new rsyslog on the same ports as ``old`` (a receiver restart)."""
    import tests.notify.rsyslog as mod

    ports = iter([old.udp_port, old.tcp_port])
    original = mod.free_port
    mod.free_port = lambda host="127.0.0.1": next(ports)  # type: ignore[assignment]
    try:
        new = start_rsyslog(root)
    finally:
        mod.free_port = original
    old.proc = new.proc
    return new


async def test_unix_datagram_socket(tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(10)
    try:
        cfg = SyslogConfig(enabled=True, transport="unix", address=str(path), facility="daemon")
        await SyslogChannel(cfg, "mx.example.test").send(_batch(2))
        data = server.recv(65536)
    finally:
        server.close()
    msg = rfc5424.parse(data)
    assert (msg.facility, msg.severity, msg.msgid) == (3, 4, "virus")
    assert msg.sd["edgeward@32473"]["count"] == "2"


async def test_unreachable_receiver_raises(tmp_path: Path) -> None:
    cfg = SyslogConfig(enabled=True, transport="unix", address=str(tmp_path / "none.sock"))
    with pytest.raises(OSError):
        await SyslogChannel(cfg, "h").send(_batch())
