"""DSN structure (RFC 3464 / RFC 6522), NOTIFY and RET handling, and the null-sender rule."""

from __future__ import annotations

import email
import email.policy
from email.message import Message

import pytest

from edgeward.delivery.dsn import build_dsn, wants_dsn
from edgeward.queue.model import MessageRecord, RecipientRecord

ORIGINAL = (
    b"From: a@src.test\r\nTo: b@dst.test\r\nMessage-ID: <orig@src.test>\r\nSubject: hi\r\n\r\nsecret body\r\n"
)
NOW = 1_800_000_000.0


def rec(sender: str = "a@src.test", ret: str | None = None, envid: str | None = None) -> MessageRecord:
    return MessageRecord(
        "Q1",
        sender,
        (RecipientRecord("b@dst.test", orcpt="rfc822;B@dst.test"), RecipientRecord("c@dst.test")),
        NOW - 3600,
        len(ORIGINAL),
        message_id="<orig@src.test>",
        ret=ret,
        envid=envid,
    )


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def status_blocks(msg: Message) -> list[Message]:
    part = msg.get_payload()[1]  # type: ignore[index]
    assert part.get_content_type() == "message/delivery-status"
    return list(part.get_payload())


def test_failure_dsn_fields() -> None:
    record = rec(envid="ENV1")
    about = [(record.recipients[0], "550 5.1.1 No such user (from mx[1.2.3.4])")]
    raw = build_dsn(record, about, "failure", ORIGINAL, "gw.example.test", NOW)
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    msg = parse(raw)
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@gw.example.test>"
    assert msg["To"] == "<a@src.test>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["References"] == "<orig@src.test>"
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    human, _, returned = msg.get_payload()  # type: ignore[misc]
    assert human.get_content_type() == "text/plain"
    assert "<b@dst.test>: 550 5.1.1 No such user" in human.get_payload()
    per_msg, per_rcpt = status_blocks(msg)
    assert per_msg["Reporting-MTA"] == "dns; gw.example.test"
    assert per_msg["Original-Envelope-Id"] == "ENV1"
    assert per_msg["Arrival-Date"] == "Fri, 15 Jan 2027 07:00:00 GMT"
    assert per_rcpt["Final-Recipient"] == "rfc822; b@dst.test"
    assert per_rcpt["Original-Recipient"] == "rfc822;B@dst.test"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 No such user (from mx[1.2.3.4])"
    assert per_rcpt["Last-Attempt-Date"] == "Fri, 15 Jan 2027 08:00:00 GMT"
    assert per_rcpt["Will-Retry-Until"] is None
    assert returned.get_content_type() == "message/rfc822"
    inner = returned.get_payload()[0]
    assert inner["Subject"] == "hi" and inner.get_payload().rstrip() == "secret body"


def test_ret_hdrs_returns_headers_only() -> None:
    record = rec(ret="HDRS")
    raw = build_dsn(record, [(record.recipients[1], "554 5.0.0 Refused")], "failure", ORIGINAL, "gw", NOW)
    returned = parse(raw).get_payload()[2]  # type: ignore[index]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert "Subject: hi" in returned.get_payload()
    assert b"secret body" not in raw
    [_, block] = status_blocks(parse(raw))
    assert block["Original-Recipient"] is None


def test_delay_dsn() -> None:
    record = rec()
    about = [(r, "451 4.4.1 Connection refused") for r in record.recipients]
    raw = build_dsn(record, about, "delay", ORIGINAL, "gw", NOW, retry_until=NOW + 86400)
    msg = parse(raw)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    blocks = status_blocks(msg)[1:]
    assert [b["Action"] for b in blocks] == ["delayed", "delayed"]
    assert [b["Status"] for b in blocks] == ["4.4.1", "4.4.1"]
    assert blocks[0]["Will-Retry-Until"] == "Sat, 16 Jan 2027 08:00:00 GMT"
    # A delay notice never returns the body.
    assert parse(raw).get_payload()[2].get_content_type() == "text/rfc822-headers"  # type: ignore[index]
    assert b"secret body" not in raw


def test_status_without_enhanced_code() -> None:
    record = rec()
    raw = build_dsn(record, [(record.recipients[0], "550 go away")], "failure", ORIGINAL, "gw", NOW)
    assert status_blocks(parse(raw))[1]["Status"] == "5.0.0"


def test_injection_is_flattened() -> None:
    record = MessageRecord(
        "Q2", "a@src.test\r\nBcc: victim@x.test", (RecipientRecord("b@dst.test\r\nX-Evil: 1"),), NOW, 1
    )
    raw = build_dsn(
        record, [(record.recipients[0], "550 5.1.1 bad\r\nX-Injected: yes")], "failure", b"", "gw", NOW
    )
    msg = parse(raw)
    assert msg["Bcc"] is None
    [_, block] = status_blocks(msg)
    assert block["X-Evil"] is None and block["X-Injected"] is None
    assert "X-Injected: yes" in block["Diagnostic-Code"]


def test_never_for_null_sender() -> None:
    record = rec(sender="")
    assert not wants_dsn(record, record.recipients[0], "failure")
    with pytest.raises(ValueError, match="null sender"):
        build_dsn(record, [(record.recipients[0], "550 5.1.1 x")], "failure", ORIGINAL, "gw", NOW)


@pytest.mark.parametrize(
    ("notify", "failure", "delay"),
    [
        ((), True, True),
        (("NEVER",), False, False),
        (("FAILURE",), True, False),
        (("DELAY",), False, True),
        (("SUCCESS",), False, False),
        (("success", "failure", "delay"), True, True),
    ],
)
def test_notify(notify: tuple[str, ...], failure: bool, delay: bool) -> None:
    record = rec()
    rcpt = RecipientRecord("x@dst.test", notify=notify)
    assert wants_dsn(record, rcpt, "failure") is failure
    assert wants_dsn(record, rcpt, "delay") is delay
