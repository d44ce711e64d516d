"""The delivery client under the recipient domains' TLS policies, against real servers.

unbound validates a DNSSEC-signed ``dane.test`` (TLSA records) served by nsd, beside an
unsigned ``plain.test`` whose domains publish MTA-STS policies; a real HTTPS server hands out
the policies; aiosmtpd on loopback plays the MX hosts, with a certificate from a test CA. Every
case checks both the result and that nothing reached a host it must not reach.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import trustme

from edgeward.config.schema import SendConnectorConfig
from edgeward.delivery.client import SmtpClient
from edgeward.delivery.mta_sts import MemoryStsCache, MtaSts
from edgeward.delivery.results import Deferred, Delivered, Failed, RecipientResult
from edgeward.delivery.routing import Route
from edgeward.net.dns import DnsResolver
from edgeward.queue.model import MessageRecord, RecipientRecord
from tests.dnssec import missing_servers, signed_zone, start_validating_resolver, tlsa_line, unsigned_zone
from tests.policyhost import PolicyHost, enforce
from tests.ports import free_port
from tests.smtpdownstream import ClosingController as Controller

from .conftest import Recorder

MESSAGE = b"From: a@src.test\r\nSubject: policy\r\n\r\nbody\r\n"
SOA = "@ IN SOA ns.{o}. admin.{o}. 1 3600 600 86400 60\n@ IN NS ns.{o}.\nns IN A 127.0.0.1\n"
STS_DOMAINS = ("sts", "unlisted", "wrongname")


@dataclass
class World:
    dns_port: int
    https_port: int
    smtp_port: int  # TLS MX host
    clear_port: int  # an MX host without STARTTLS
    ca_file: Path
    handler: Recorder

    def resolver(self) -> DnsResolver:
        return DnsResolver(["127.0.0.1"], port=self.dns_port, timeout=5.0)

    def received_for(self, address: str) -> list[bool]:
        """Whether each message that reached an MX host for ``address`` came over TLS."""
        return [m.tls for m in self.handler.messages if address in m.rcpt_tos]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    why = missing_servers()
    if why is not None:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("outbound")
    ca = trustme.CA()
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    mx_cert = ca.issue_cert("mx.dane.test", "mx.sts.plain.test", "other.plain.test")
    mx_der = ssl.PEM_cert_to_DER_cert(mx_cert.cert_chain_pems[0].bytes().decode())
    stranger = trustme.CA().issue_cert("mx.dane.test")
    stranger_der = ssl.PEM_cert_to_DER_cert(stranger.cert_chain_pems[0].bytes().decode())
    smtp_port, clear_port, https_port = free_port(), free_port(), free_port()

    dane = signed_zone(
        "dane.test",
        SOA.format(o="dane.test")
        + "good IN MX 10 mx.dane.test.\nmx IN A 127.0.0.1\n"
        + tlsa_line(f"_{smtp_port}._tcp.mx", 3, 1, 1, mx_der)
        + tlsa_line(f"_{clear_port}._tcp.mx", 3, 1, 1, mx_der)
        + "mismatch IN MX 10 mm.dane.test.\nmm IN A 127.0.0.1\n"
        + tlsa_line(f"_{smtp_port}._tcp.mm", 3, 1, 1, stranger_der),
    )
    plain_body = SOA.format(o="plain.test") + "other IN A 127.0.0.1\n"
    for label in STS_DOMAINS:
        mx = "other.plain.test." if label == "unlisted" else f"mx.{label}.plain.test."
        plain_body += (
            f"{label} IN MX 10 {mx}\nmx.{label} IN A 127.0.0.1\n"
            f'_mta-sts.{label} IN TXT "v=STSv1; id=20261128;"\nmta-sts.{label} IN A 127.0.0.1\n'
        )
    plain_body += "nosts IN MX 10 mx.sts.plain.test.\n"
    trials = (
        ("trial", "mx.sts.plain.test."),
        ("trialbad", "mx.trialbad.plain.test."),
        ("trialother", "mx.sts.plain.test."),
    )
    for label, mx in trials:
        plain_body += (
            f"{label} IN MX 10 {mx}\nmx.{label} IN A 127.0.0.1\n"
            f'_mta-sts.{label} IN TXT "v=STSv1; id=1;"\nmta-sts.{label} IN A 127.0.0.1\n'
        )
    dns_server = start_validating_resolver(
        root / "dns",
        {"dane.test": dane.text, "plain.test": unsigned_zone("plain.test", plain_body)},
        anchors=[dane.anchor],
        insecure=["plain.test"],
    )

    policies = {f"{label}.plain.test": enforce(f"mx.{label}.plain.test") for label in STS_DOMAINS}
    policies["trial.plain.test"] = enforce("mx.sts.plain.test", mode="testing")
    policies["trialbad.plain.test"] = enforce("mx.trialbad.plain.test", mode="testing")
    policies["trialother.plain.test"] = enforce("mx.elsewhere.plain.test", mode="testing")
    https = PolicyHost(https_port, ca, policies)

    smtp_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    mx_cert.configure_cert(smtp_context)
    handler = Recorder()
    controllers = [
        Controller(
            handler, hostname="127.0.0.1", port=smtp_port, tls_context=smtp_context, decode_data=False
        ),
        Controller(handler, hostname="127.0.0.1", port=clear_port, decode_data=False),
    ]
    for controller in controllers:
        controller.start()
    try:
        yield World(dns_server.port, https_port, smtp_port, clear_port, ca_file, handler)
    finally:
        for controller in controllers:
            controller.stop()
        https.close()
        dns_server.stop()


def _record(rcpt: str, **kw: bool) -> MessageRecord:
    return MessageRecord("MSG1", "a@src.test", (RecipientRecord(rcpt),), time.time(), len(MESSAGE), **kw)


async def _send(
    world: World, rcpt: str, *, port: int | None = None, record: MessageRecord | None = None, **kw: object
) -> RecipientResult:
    conn = SendConnectorConfig(
        name="internet", address_spaces=("*",), dns_routing=True,  # type: ignore[arg-type]
        port=port or world.smtp_port, connect_timeout=5, command_timeout=10, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    resolver = world.resolver()
    mta_sts = MtaSts(resolver, MemoryStsCache(), https_port=world.https_port, ca_file=world.ca_file)
    client = SmtpClient(
        conn, helo_name="gw.src.test", resolver=resolver, mta_sts=mta_sts, ca_file=world.ca_file
    )
    rec = record or _record(rcpt)
    try:
        got = await client.deliver(Route(conn, rcpt.split("@")[1]), rec, rec.recipients, MESSAGE)
    finally:
        await client.close()
    return got[rcpt]


# -- DANE --------------------------------------------------------------------------------------


async def test_dane_authenticates_the_mx_by_its_tlsa_record(world: World) -> None:
    result = await _send(world, "a@good.dane.test", dane=True)
    assert isinstance(result, Delivered), result
    assert "DANE (dane)" in result.detail and result.detail.startswith("TLSv1.")
    assert world.received_for("a@good.dane.test") == [True]


async def test_dane_mismatch_defers_and_sends_nothing(world: World) -> None:
    result = await _send(world, "b@mismatch.dane.test", dane=True)
    assert isinstance(result, Deferred) and result.reply.enhanced == "4.7.5", result
    assert "DANE authentication failed" in result.reply.text
    assert world.received_for("b@mismatch.dane.test") == []


async def test_dane_makes_tls_mandatory_even_on_an_opportunistic_connector(world: World) -> None:
    result = await _send(world, "c@good.dane.test", port=world.clear_port, dane=True)
    assert isinstance(result, Deferred) and result.reply.enhanced == "4.7.4", result
    assert "(dane)" in result.reply.text
    assert world.received_for("c@good.dane.test") == []


async def test_without_dane_the_same_mismatch_is_delivered_opportunistically(world: World) -> None:
    result = await _send(world, "d@mismatch.dane.test")
    assert isinstance(result, Delivered) and result.detail.endswith("not verified"), result


async def test_tls_required_no_exempts_a_message_from_dane(world: World) -> None:
    rec = _record("e@mismatch.dane.test", tls_optional=True)
    result = await _send(world, "e@mismatch.dane.test", record=rec, dane=True)
    assert isinstance(result, Delivered), result
    assert world.received_for("e@mismatch.dane.test") == [True]


# -- MTA-STS -----------------------------------------------------------------------------------


async def test_mta_sts_enforce_verifies_the_mx_certificate_and_name(world: World) -> None:
    result = await _send(world, "f@sts.plain.test", mta_sts=True)
    assert isinstance(result, Delivered), result
    assert "CA-valid, name matched (mta-sts)" in result.detail


async def test_mta_sts_skips_an_mx_the_policy_does_not_list(world: World) -> None:
    result = await _send(world, "g@unlisted.plain.test", mta_sts=True)
    assert isinstance(result, Deferred) and result.reply.enhanced == "4.7.5", result
    assert "MTA-STS" in result.reply.text
    assert world.received_for("g@unlisted.plain.test") == []


async def test_mta_sts_refuses_a_certificate_without_the_mx_name(world: World) -> None:
    result = await _send(world, "h@wrongname.plain.test", mta_sts=True)
    assert isinstance(result, Deferred) and result.reply.enhanced == "4.7.5", result
    assert world.received_for("h@wrongname.plain.test") == []
    # Without MTA-STS the connector's opportunistic TLS takes the same host.
    assert isinstance(await _send(world, "h2@wrongname.plain.test"), Delivered)


async def test_mta_sts_testing_delivers_and_reports_what_enforce_would_do(world: World) -> None:
    good = await _send(world, "t1@trial.plain.test", mta_sts=True)
    assert isinstance(good, Delivered), good
    assert good.detail.endswith("not verified; MTA-STS testing: would pass"), good.detail
    # The MX certificate does not name mx.trialbad.plain.test: delivered all the same, and said.
    bad = await _send(world, "t2@trialbad.plain.test", mta_sts=True)
    assert isinstance(bad, Delivered), bad
    assert (
        "MTA-STS testing: would fail (certificate would not verify for mx.trialbad.plain.test" in bad.detail
    )
    # A policy that lists another host is reported too.
    unlisted = await _send(world, "t3@trialother.plain.test", mta_sts=True)
    assert isinstance(unlisted, Delivered), unlisted
    assert "would fail (MX host not listed in the policy" in unlisted.detail


# -- REQUIRETLS --------------------------------------------------------------------------------


async def test_requiretls_needs_an_authenticated_mx_answer(world: World) -> None:
    # plain.test is unsigned and nosts has no MTA-STS policy: nothing authenticates its MX.
    rec = _record("i@nosts.plain.test", require_tls=True)
    result = await _send(world, "i@nosts.plain.test", record=rec, mta_sts=True)
    assert isinstance(result, Deferred) and result.reply.enhanced == "4.7.10", result
    assert world.received_for("i@nosts.plain.test") == []


async def test_requiretls_with_an_enforced_policy_still_needs_requiretls_at_the_mx(world: World) -> None:
    rec = _record("j@sts.plain.test", require_tls=True)
    result = await _send(world, "j@sts.plain.test", record=rec, mta_sts=True)
    # The MX was authenticated by MTA-STS and its certificate verified, but aiosmtpd does not
    # offer REQUIRETLS: RFC 8689 §5, a permanent failure, and the message never left.
    assert isinstance(result, Failed) and result.reply.enhanced == "5.7.30", result
    assert world.received_for("j@sts.plain.test") == []


async def test_requiretls_over_dane(world: World) -> None:
    rec = replace(_record("k@good.dane.test"), require_tls=True)
    result = await _send(world, "k@good.dane.test", record=rec, dane=True)
    # dane.test is signed, so the MX answer is authenticated and DANE authenticates the host;
    # only the missing REQUIRETLS extension stops it.
    assert isinstance(result, Failed) and result.reply.enhanced == "5.7.30", result
