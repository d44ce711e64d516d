"""The SMTP delivery client against real downstream servers on loopback."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest

from edgeward.config.schema import SendConnectorConfig
from edgeward.delivery.client import SmtpClient
from edgeward.delivery.results import Deferred, Delivered, Failed
from edgeward.delivery.routing import Route
from edgeward.net.dns import DnsResolver
from edgeward.queue.model import MessageRecord, RecipientRecord

from .conftest import Downstream, Nameserver, Recorder, Sink, free_port

MESSAGE = b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: hello\r\n\r\nbody line\r\n"


def connector(*hosts: str, **kw: object) -> SendConnectorConfig:
    return SendConnectorConfig(
        name="out",
        address_spaces=("*",),  # type: ignore[arg-type]
        smart_hosts=hosts,
        fqdn="gw.edgeward.test",
        connect_timeout=5,
        command_timeout=10,
        **kw,  # type: ignore[arg-type]
    )


def record(*rcpts: str, sender: str = "a@src.test") -> MessageRecord:
    return MessageRecord("MSG1", sender, tuple(RecipientRecord(r) for r in rcpts), time.time(), len(MESSAGE))


async def send(
    conn: SendConnectorConfig, rec: MessageRecord, data: bytes = MESSAGE, **kw: object
) -> dict[str, Delivered | Deferred | Failed]:
    client = SmtpClient(conn, helo_name="ignored.test", **kw)  # type: ignore[arg-type]
    route = Route(conn, "dst.test" if conn.dns_routing else "out")
    try:
        return await client.deliver(route, rec, rec.recipients, data)
    finally:
        await client.close()


async def test_delivers_to_smtp_sink(smtp_sink: Callable[..., Sink]) -> None:
    sink = smtp_sink()
    got = await send(connector(f"127.0.0.1:{sink.port}"), record("b@dst.test", "c@dst.test"))
    assert set(got) == {"b@dst.test", "c@dst.test"}
    assert all(isinstance(r, Delivered) and r.reply.code == 250 for r in got.values())
    [dump] = sink.messages()
    # smtp-sink writes its dump with LF line ends, after X- lines describing the envelope.
    assert b"X-Helo-Args: gw.edgeward.test\n" in dump
    assert b"X-Rcpt-Args: <b@dst.test>\n" in dump and b"X-Rcpt-Args: <c@dst.test>\n" in dump
    assert dump.endswith(b"Subject: hello\n\nbody line\n\n")


async def test_wire_data_is_crlf_and_dot_stuffed(downstream: Callable[..., Downstream]) -> None:
    ds = downstream()
    data = b"Subject: dots\n\n.leading dot\n.\nbare lf\rbare cr\r\nend"
    got = await send(connector(f"127.0.0.1:{ds.port}"), record("b@dst.test"), data)
    assert isinstance(got["b@dst.test"], Delivered)
    [msg] = ds.handler.messages
    # The server unstuffs; a '.' line that had not been stuffed would have ended DATA early.
    assert msg.data == b"Subject: dots\r\n\r\n.leading dot\r\n.\r\nbare lf\r\nbare cr\r\nend\r\n"
    assert ds.handler.helo_names[0] == "gw.edgeward.test"
    assert msg.mail_from == "a@src.test" and "SIZE=" in " ".join(msg.mail_options)


async def test_per_recipient_results(downstream: Callable[..., Downstream]) -> None:
    handler = Recorder(
        rcpt_replies={"bad@dst.test": "550 5.1.1 No such user", "later@dst.test": "450 4.2.1 Busy"}
    )
    ds = downstream(handler=handler)
    got = await send(
        connector(f"127.0.0.1:{ds.port}"), record("ok@dst.test", "bad@dst.test", "later@dst.test")
    )
    ok, bad, later = got["ok@dst.test"], got["bad@dst.test"], got["later@dst.test"]
    assert isinstance(ok, Delivered)
    assert isinstance(bad, Failed) and (bad.reply.code, bad.reply.enhanced) == (550, "5.1.1")
    assert "No such user" in bad.reply.text
    assert isinstance(later, Deferred) and later.reply.enhanced == "4.2.1"
    assert handler.messages[0].rcpt_tos == ["ok@dst.test"]


async def test_5xx_to_mail_fails_all(downstream: Callable[..., Downstream]) -> None:
    ds = downstream(handler=Recorder(mail_reply="553 5.7.1 Sender refused"))
    got = await send(connector(f"127.0.0.1:{ds.port}"), record("x@dst.test", "y@dst.test"))
    assert all(isinstance(r, Failed) and r.reply.enhanced == "5.7.1" for r in got.values())


async def test_5xx_to_data_fails_accepted_only(downstream: Callable[..., Downstream]) -> None:
    handler = Recorder(
        rcpt_replies={"later@dst.test": "451 4.3.0 Later"}, data_reply="554 5.6.0 Content refused"
    )
    ds = downstream(handler=handler)
    got = await send(connector(f"127.0.0.1:{ds.port}"), record("x@dst.test", "later@dst.test"))
    assert isinstance(got["x@dst.test"], Failed) and got["x@dst.test"].reply.enhanced == "5.6.0"
    assert isinstance(got["later@dst.test"], Deferred)


async def test_4xx_to_data_defers(downstream: Callable[..., Downstream]) -> None:
    ds = downstream(handler=Recorder(data_reply="452 4.3.1 Out of space"))
    got = await send(connector(f"127.0.0.1:{ds.port}"), record("x@dst.test"))
    assert isinstance(got["x@dst.test"], Deferred) and got["x@dst.test"].reply.code == 452


@pytest.mark.parametrize(
    ("option", "stage", "kind", "code"),
    [
        ("-f", "RCPT", Failed, 500),
        ("-r", "RCPT", Deferred, 450),
        ("-f", ".", Failed, 500),
        ("-r", ".", Deferred, 450),
        ("-Q", "DATA", Deferred, 421),
        ("-r", "MAIL", Deferred, 450),
        ("-f", "MAIL", Failed, 500),
    ],
)
async def test_smtp_sink_errors_per_stage(
    smtp_sink: Callable[..., Sink], option: str, stage: str, kind: type, code: int
) -> None:
    sink = smtp_sink(option, stage)
    got = await send(connector(f"127.0.0.1:{sink.port}"), record("b@dst.test"))
    result = got["b@dst.test"]
    assert isinstance(result, kind)
    assert result.reply.code == code
    assert sink.messages() == [] or kind is not Delivered


async def test_smart_host_failover(downstream: Callable[..., Downstream]) -> None:
    ds = downstream()
    dead = free_port()
    got = await send(connector(f"127.0.0.1:{dead}", f"127.0.0.1:{ds.port}"), record("b@dst.test"))
    assert isinstance(got["b@dst.test"], Delivered)
    assert len(ds.handler.messages) == 1


async def test_no_host_answers_defers() -> None:
    got = await send(connector(f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"), record("b@dst.test"))
    result = got["b@dst.test"]
    assert isinstance(result, Deferred) and result.reply.enhanced == "4.4.1"


async def test_opportunistic_starttls(
    downstream: Callable[..., Downstream], tls_server_context: ssl.SSLContext
) -> None:
    ds = downstream(tls_context=tls_server_context)
    got = await send(connector(f"127.0.0.1:{ds.port}"), record("b@dst.test"))
    assert isinstance(got["b@dst.test"], Delivered)
    assert ds.handler.messages[0].tls is True
    # EHLO again after STARTTLS (RFC 3207 §4.2).
    assert ds.handler.helo_names == ["gw.edgeward.test", "gw.edgeward.test"]


async def test_tls_none_sends_in_clear(
    downstream: Callable[..., Downstream], tls_server_context: ssl.SSLContext
) -> None:
    ds = downstream(tls_context=tls_server_context)
    got = await send(connector(f"127.0.0.1:{ds.port}", tls="none"), record("b@dst.test"))
    assert isinstance(got["b@dst.test"], Delivered)
    assert ds.handler.messages[0].tls is False


async def test_tls_required_without_starttls_never_sends(downstream: Callable[..., Downstream]) -> None:
    ds = downstream()
    got = await send(connector(f"127.0.0.1:{ds.port}", tls="required"), record("b@dst.test"))
    result = got["b@dst.test"]
    assert isinstance(result, Deferred) and result.reply.enhanced == "4.7.4"
    assert ds.handler.messages == []


async def test_tls_required_with_starttls(
    downstream: Callable[..., Downstream], tls_server_context: ssl.SSLContext
) -> None:
    ds = downstream(tls_context=tls_server_context)
    got = await send(connector(f"127.0.0.1:{ds.port}", tls="required"), record("b@dst.test"))
    assert isinstance(got["b@dst.test"], Delivered)
    assert ds.handler.messages[0].tls is True


async def test_8bit_uses_8bitmime(downstream: Callable[..., Downstream]) -> None:
    ds = downstream()
    data = "Subject: caf\u00e9\r\n\r\nna\u00efve\r\n".encode()
    got = await send(connector(f"127.0.0.1:{ds.port}"), record("b@dst.test"), data)
    assert isinstance(got["b@dst.test"], Delivered)
    assert "BODY=8BITMIME" in ds.handler.messages[0].mail_options
    assert ds.handler.messages[0].data == data


async def test_8bit_to_peer_without_8bitmime_fails(downstream: Callable[..., Downstream]) -> None:
    ds = downstream(handler=Recorder(drop_extensions=("8BITMIME",)))
    got = await send(connector(f"127.0.0.1:{ds.port}"), record("b@dst.test"), b"Subject: x\r\n\r\n\xe9\r\n")
    result = got["b@dst.test"]
    assert isinstance(result, Failed) and result.reply.enhanced == "5.6.3"
    assert ds.handler.messages == []


async def test_size_limit_of_peer(downstream: Callable[..., Downstream]) -> None:
    ds = downstream(data_size_limit=20)
    got = await send(connector(f"127.0.0.1:{ds.port}"), record("b@dst.test"))
    result = got["b@dst.test"]
    assert isinstance(result, Failed) and result.reply.enhanced == "5.3.4"


async def test_connector_size_limit() -> None:
    got = await send(connector("127.0.0.1:1", max_message_size=10), record("b@dst.test"))
    assert isinstance(got["b@dst.test"], Failed) and got["b@dst.test"].reply.code == 552


async def test_mx_routing_implicit_mx(nameserver: Nameserver, downstream: Callable[..., Downstream]) -> None:
    ds = downstream()
    conn = SendConnectorConfig(name="internet", address_spaces=("*",), dns_routing=True, port=ds.port)  # type: ignore[arg-type]
    client = SmtpClient(conn, helo_name="gw.test", resolver=DnsResolver(["127.0.0.1"], port=nameserver.port))
    rec = record("user@implicit.test")
    got = await client.deliver(Route(conn, "implicit.test"), rec, rec.recipients, MESSAGE)
    await client.close()
    assert isinstance(got["user@implicit.test"], Delivered)
    assert ds.handler.messages[0].rcpt_tos == ["user@implicit.test"]


async def test_mx_routing_null_mx_fails(nameserver: Nameserver) -> None:
    conn = SendConnectorConfig(name="internet", address_spaces=("*",), dns_routing=True)  # type: ignore[arg-type]
    client = SmtpClient(conn, helo_name="gw.test", resolver=DnsResolver(["127.0.0.1"], port=nameserver.port))
    rec = record("user@nullmx.test")
    got = await client.deliver(Route(conn, "nullmx.test"), rec, rec.recipients, MESSAGE)
    await client.close()
    result = got["user@nullmx.test"]
    assert isinstance(result, Failed) and (result.reply.code, result.reply.enhanced) == (556, "5.1.10")


async def test_mx_host_without_address_defers(nameserver: Nameserver) -> None:
    conn = SendConnectorConfig(name="internet", address_spaces=("*",), dns_routing=True)  # type: ignore[arg-type]
    client = SmtpClient(conn, helo_name="gw.test", resolver=DnsResolver(["127.0.0.1"], port=nameserver.port))
    rec = record("user@dangling.test")
    got = await client.deliver(Route(conn, "dangling.test"), rec, rec.recipients, MESSAGE)
    await client.close()
    result = got["user@dangling.test"]
    assert isinstance(result, Deferred) and result.reply.enhanced == "4.4.4"


async def test_connections_are_reused_for_messages_to_the_same_host() -> None:
    """Three messages to one smart host travel over one connection (Exchange: 20 per connection)."""
    import asyncio

    from edgeward.config.schema import SendConnectorConfig
    from edgeward.delivery.client import SmtpClient
    from edgeward.delivery.results import Delivered
    from edgeward.delivery.routing import Router
    from edgeward.queue.model import MessageRecord, RecipientRecord
    from tests.delivery.conftest import free_port
    from tests.smtpdownstream import ClosingController as Controller

    sessions: list[object] = []
    received: list[bytes] = []

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
            sessions.append(session)
            session.host_name = hostname
            return responses

        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            received.append(envelope.content)
            return "250 2.0.0 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        connector = SendConnectorConfig(
            name="hub", address_spaces=("*",), smart_hosts=(f"127.0.0.1:{port}",), tls="none"
        )
        client = SmtpClient(connector, helo_name="mx.example.test")
        route = Router([connector], ["example.test"]).route("example.test")
        assert route is not None
        for i in range(3):
            record = MessageRecord(f"id{i}", "a@remote.test", (RecipientRecord("b@example.test"),), 0.0, 10)
            result = await client.deliver(route, record, record.recipients, b"Subject: %d\r\n\r\nx\r\n" % i)
            assert isinstance(result["b@example.test"], Delivered)
        await client.close()
        await asyncio.sleep(0.1)
    finally:
        controller.stop()
    assert len(received) == 3
    assert len({id(s) for s in sessions}) == 1


class _PeerRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.peers: list[str] = []

    async def handle_EHLO(
        self, server: object, session: Any, envelope: object, hostname: str, responses: list[str]
    ) -> list[str]:
        self.peers.append(session.peer[0])
        return await super().handle_EHLO(server, session, envelope, hostname, responses)


@pytest.mark.parametrize("source", ["127.0.0.2", "127.0.0.3"])
async def test_source_address_binds_outbound_connections(
    downstream: Callable[..., Downstream], source: str
) -> None:
    handler = _PeerRecorder()
    ds = downstream(handler=handler)
    got = await send(connector(f"127.0.0.1:{ds.port}", source_address=source), record("b@dst.test"))
    assert isinstance(got["b@dst.test"], Delivered)
    assert handler.peers == [source]
