"""Fuzzing delivery status notifications: the DSNs we write and the ones we receive.

``delivery.dsn.build_dsn`` copies untrusted text into a message: recipient addresses and
ORCPT from the envelope, ENVID, the Message-ID, remote reply text, the original message.
Generated records full of line breaks, NULs, 8-bit text and long values, with originals from
the shared corpus mutated, must still give a DSN whose lines all end in CRLF, whose top-level
header holds only the fields we write, and which a MIME parser reads as a multipart/report
with one RFC 3464 status block per recipient (Action, a 3-digit Status of the right class).
The reply-text parser it uses must never raise and must be stable under its own output.

DSNs others send us are read by the MIME walker; generated RFC 3464 reports (with broken
variants) go through it and the header reader.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import Message

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeward.content.mime import ParseLimits, parse_message
from edgeward.delivery.dsn import build_dsn
from edgeward.delivery.results import MAX_REPLY_TEXT, parse_reply_text, reply_line
from edgeward.headers import parse_headers
from edgeward.queue.model import MessageRecord, RecipientRecord
from tests.fuzz import seeds
from tests.fuzz.profiles import fuzz_settings

pytestmark = pytest.mark.fuzz

_STATUS = re.compile(r"^[245]\.[0-9]{1,3}\.[0-9]{1,3}$")
_OWN_FIELDS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Auto-Submitted",
    "Content-Type",
    "In-Reply-To",
    "References",
}
NOW = 1_800_000_000.0

_HOSTILE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "a@b.example",
            "a@b.example\r\nBcc: victim@example.net",
            "x\nContent-Type: text/html",
            "\u00e9@\u00e9.example",
            "<id@host>",
            "<id@host>\r\nX-Injected: 1",
            "--=_edgeward_",
            "\x00",
            "rfc822;a@b",
        ]
    ),
    st.text(max_size=3).map(lambda s: s * 400),
)
_REPLY = st.one_of(
    _HOSTILE,
    st.builds(
        lambda code, enh, text: f"{code} {enh} {text}",
        st.sampled_from(["250", "421", "450", "451", "550", "554", "599", "600", "199", "5١١"]),
        st.sampled_from(["5.1.1", "4.4.7", "2.0.0", "5.٧.1", "9.9.9", "5.1234.1", ""]),
        _HOSTILE,
    ),
)
_MESSAGES = seeds.message_seeds()
_ORIGINAL = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(_MESSAGES).flatmap(lambda m: st.just(m[:4000]))
    if _MESSAGES
    else st.just(b"Subject: x\r\n\r\nbody"),
    seeds.mutated(_MESSAGES) if _MESSAGES else st.just(b"Subject: x\n\nbody\r"),
)


@st.composite
def _record(draw: st.DrawFn) -> tuple[MessageRecord, list[tuple[RecipientRecord, str]]]:
    rcpts = [
        RecipientRecord(
            draw(_HOSTILE),
            notify=draw(st.sampled_from([(), ("FAILURE",), ("DELAY", "FAILURE")])),
            orcpt=draw(st.none() | _HOSTILE),
        )
        for _ in range(draw(st.integers(1, 4)))
    ]
    sender = draw(_HOSTILE.filter(bool))
    record = MessageRecord(
        "Q" + draw(st.text("0123456789ABCDEF", min_size=1, max_size=12)),
        sender,
        tuple(rcpts),
        NOW - draw(st.floats(0, 1e6)),
        0,
        message_id=draw(_HOSTILE),
        envid=draw(st.none() | _HOSTILE),
        ret=draw(st.sampled_from([None, "FULL", "HDRS", "hdrs", "junk"])),
    )
    return record, [(r, draw(_REPLY)) for r in rcpts]


def _check_dsn(raw: bytes, record: MessageRecord, recipients: int, kind: str) -> Message:
    # Every line ends in CRLF, none is a bare CR or LF.
    assert raw.count(b"\n") == raw.count(b"\r\n") == raw.count(b"\r")
    head = parse_headers(raw)
    names = [name for name, _ in head.fields]
    assert set(names) <= _OWN_FIELDS, names
    assert head.malformed == 0
    assert len(names) == len(set(names))
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) == 3, [p.get_content_type() for p in parts]
    assert [p.get_content_type() for p in parts[:2]] == ["text/plain", "message/delivery-status"]
    assert parts[2].get_content_type() in ("message/rfc822", "text/rfc822-headers")
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list) and len(blocks) == 1 + recipients
    for block in blocks[1:]:
        assert block["Action"] == ("failed" if kind == "failure" else "delayed")
        status = block["Status"]
        assert status is not None and _STATUS.match(status), status
        assert status[0] != "2"
        if kind == "delay":
            assert status.startswith("4.")
        assert block["Final-Recipient"] is not None
    # Our own walker reads it the same way.
    walked = parse_message(raw, ParseLimits())
    assert walked.structure[:3] == ["multipart/report", "text/plain", "message/delivery-status"]
    return msg


@fuzz_settings(2)
@given(_record(), _ORIGINAL, st.sampled_from(["failure", "delay"]), _HOSTILE.filter(bool))
def test_built_dsn_is_well_formed(
    case: tuple[MessageRecord, list[tuple[RecipientRecord, str]]], original: bytes, kind: str, mta: str
) -> None:
    record, recipients = case
    raw = build_dsn(record, recipients, kind, original, mta, NOW, retry_until=NOW + 3600)  # type: ignore[arg-type]
    _check_dsn(raw, record, len(recipients), kind)
    ascii_in = all(
        t.isascii()
        for t in [record.mail_from, record.envid or "", mta, *(r.address for r, _ in recipients)]
        + [r.orcpt or "" for r, _ in recipients]
        + [reply for _, reply in recipients]
    )
    if ascii_in and original.isascii():
        assert raw.isascii()


@fuzz_settings(2)
@given(st.one_of(_REPLY, st.text(max_size=200)))
def test_reply_text_parser(text: str) -> None:
    reply = parse_reply_text(text)
    assert 200 <= reply.code <= 599
    if reply.enhanced is not None:
        assert reply.enhanced[0] == str(reply.code)[0]
    assert not any(c in reply.text for c in "\r\n\x00")
    # What we store (reply_line) reads back with the same code and enhanced code; the text
    # too unless the stored line had to be cut to MAX_REPLY_TEXT.
    again = parse_reply_text(reply_line(reply))
    assert (again.code, again.enhanced) == (reply.code, reply.enhanced)
    if len(reply_line(reply)) <= MAX_REPLY_TEXT:
        assert again == reply


# --- DSNs we receive --------------------------------------------------------------------------

_FIELD_VALUE = st.one_of(
    st.sampled_from(
        ["rfc822; a@b.example", "failed", "delayed", "5.1.1", "smtp; 550 5.1.1 no", "dns; mx.example"]
    ),
    st.text(max_size=30).map(lambda t: t.replace("\r", "").replace("\n", " ")),
)
_FIELD_NAME = st.sampled_from(
    [
        "Reporting-MTA",
        "Arrival-Date",
        "Original-Envelope-Id",
        "Final-Recipient",
        "Original-Recipient",
        "Action",
        "Status",
        "Remote-MTA",
        "Diagnostic-Code",
        "Last-Attempt-Date",
        "Will-Retry-Until",
        "X-Vendor",
    ]
)


@st.composite
def _inbound_dsn(draw: st.DrawFn) -> bytes:
    boundary = draw(st.sampled_from(["b", "=_x", "simple boundary", "a" * 70]))
    blocks = []
    for _ in range(draw(st.integers(1, 4))):
        fields = draw(st.lists(st.tuples(_FIELD_NAME, _FIELD_VALUE), max_size=8))
        blocks.append("".join(f"{n}: {v}\r\n" for n, v in fields))
    status = "\r\n".join(blocks)
    returned = draw(_ORIGINAL)
    parts = [
        b"Content-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n",
        b"Content-Type: message/delivery-status\r\n\r\n" + status.encode("utf-8", "surrogatepass"),
        draw(
            st.sampled_from(
                [b"Content-Type: message/rfc822\r\n\r\n", b"Content-Type: text/rfc822-headers\r\n\r\n"]
            )
        )
        + returned,
    ]
    body = b"".join(f"--{boundary}\r\n".encode() + p + b"\r\n" for p in parts)
    if draw(st.booleans()):
        body += f"--{boundary}--\r\n".encode()
    head = (
        "From: MAILER-DAEMON@mx.example\r\nSubject: failure notice\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
    )
    return head.encode() + body


@fuzz_settings(2)
@given(st.data())
def test_inbound_dsn(data: st.DataObject) -> None:
    raw = data.draw(_inbound_dsn())
    if data.draw(st.booleans()):
        raw = data.draw(seeds.mutated([raw]))
    limits = ParseLimits(max_parts=8, max_depth=4)
    message = parse_message(raw, limits)
    assert len(message.structure) <= limits.max_parts
    block = parse_headers(raw, 50)
    assert len(block.fields) <= 50


@pytest.mark.skipif(not _MESSAGES, reason=seeds.corpus_reason(seeds.PARSER_TESTS))
def test_corpus_reports_walk_as_reports() -> None:
    """The corpus' own DSNs and other reports (MimeKit's test data holds several)."""
    reports = [m for m in seeds.corpus_messages() if b"multipart/report" in m[:4000]]
    assert reports
    for raw in reports:
        assert "multipart/report" in parse_message(raw).structure
