from __future__ import annotations

import pytest

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.filters.base import SessionInfo
from edgeward.headers import parse_headers
from edgeward.queue.model import MessageRecord
from edgeward.server.receipt import Transaction, queue_record
from edgeward.smtp import events as ev
from edgeward.types import Address, Peer

INFO = SessionInfo("s1", Peer("192.0.2.1", 4000), ReceiveConnectorConfig(name="internet"))


def _record(params: tuple[tuple[str, str | None], ...], message: bytes) -> MessageRecord:
    tx = Transaction(ev.MailFrom(Address("a", "src.test"), params))
    tx.rcpts.append(Address("b", "dst.test"))
    tx.rcpt_params.append({})
    return queue_record("ID1", tx, message, parse_headers(message), INFO)


@pytest.mark.parametrize(
    ("params", "header", "require_tls", "tls_optional"),
    [
        ((), b"", False, False),
        ((("REQUIRETLS", None),), b"", True, False),
        ((), b"TLS-Required: No\r\n", False, True),
        ((), b"TLS-Required:   no \r\n", False, True),
        ((), b"TLS-Required: Yes\r\n", False, False),
        # RFC 8689 §5: REQUIRETLS wins over the header.
        ((("REQUIRETLS", None),), b"TLS-Required: No\r\n", True, False),
    ],
)
def test_requiretls_and_tls_required_header_are_recorded(
    params: tuple[tuple[str, str | None], ...], header: bytes, require_tls: bool, tls_optional: bool
) -> None:
    record = _record(params, header + b"Subject: x\r\n\r\nbody\r\n")
    assert (record.require_tls, record.tls_optional) == (require_tls, tls_optional)
