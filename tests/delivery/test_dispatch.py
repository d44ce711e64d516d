"""The dispatcher turns a send connector that cannot be set up into deferrals, never a crash."""

from __future__ import annotations

import time
from pathlib import Path

from edgeward.config.load import parse_config
from edgeward.config.schema import Config
from edgeward.delivery.dispatch import Dispatcher
from edgeward.delivery.results import Deferred, RecipientResult
from edgeward.delivery.routing import Router
from edgeward.net.dns import DnsResolver
from edgeward.queue.model import MessageRecord, RecipientRecord

BODY = b"Subject: x\r\n\r\nbody\r\n"


def _record() -> MessageRecord:
    return MessageRecord("ID1", "a@src.test", (RecipientRecord("b@dst.test"),), time.time(), len(BODY))


async def _deliver_once(config: Config, resolver: DnsResolver | None) -> RecipientResult:
    dispatcher = Dispatcher(config, resolver)
    route = Router.from_config(config).route("dst.test")
    assert route is not None
    try:
        got = await dispatcher(route, _record(), _record().recipients, BODY)
    finally:
        await dispatcher.close()
    return got["b@dst.test"]


async def test_a_missing_password_file_defers_with_4_3_5(tmp_path: Path) -> None:
    config = parse_config({
        "server": {"data_dir": str(tmp_path)},
        "send_connectors": [{"name": "hub", "address_spaces": ["*"], "smart_hosts": ["127.0.0.1:1"],
                             "tls": "required", "auth_username": "gw", "auth_password_file": "missing.txt"}],
    })  # fmt: skip
    result = await _deliver_once(config, None)
    assert isinstance(result, Deferred) and result.reply.enhanced == "4.3.5"
    assert "hub is misconfigured" in result.reply.text


async def test_an_unreadable_mta_sts_trust_file_defers(tmp_path: Path) -> None:
    config = parse_config({
        "server": {"data_dir": str(tmp_path)},
        "send_connectors": [{"name": "internet", "address_spaces": ["*"], "dns_routing": True,
                             "mta_sts": True}],
        "mta_sts": {"ca_file": str(tmp_path / "no-such-ca.pem")},
    })  # fmt: skip
    result = await _deliver_once(config, DnsResolver(["127.0.0.1"], port=1, timeout=0.5))
    assert isinstance(result, Deferred) and result.reply.enhanced == "4.3.5", result
