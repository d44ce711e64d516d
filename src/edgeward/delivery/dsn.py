"""Delivery status notifications (RFC 3464) in a multipart/report (RFC 6522).

This module owns who gets a DSN and what it says. :func:`build_dsn` writes the three parts: a
human-readable explanation, the ``message/delivery-status`` fields (Reporting-MTA,
Arrival-Date, per recipient Final-Recipient, Original-Recipient, Action, Status,
Diagnostic-Code, Last-Attempt-Date, and Will-Retry-Until for a delay), and the returned
content: the whole message for a failure with ``RET=FULL`` or no RET, only its header as
``text/rfc822-headers`` for ``RET=HDRS``, for delay notices, for messages over
``MAX_RETURNED`` and for 8-bit messages (so the notice itself stays 7-bit and deliverable).

Who is told (RFC 3461 §4.1, RFC 5321 §6.1): never the null sender (no notice about a notice);
a recipient with ``NOTIFY=NEVER`` never; otherwise a failure DSN unless NOTIFY lists only other
values, a delay DSN when NOTIFY lists DELAY or says nothing (Exchange's default).

Security: every value copied in from the envelope or a remote reply is flattened to one line
without control characters and bounded before it becomes a header or field, so a crafted
recipient or reply text cannot inject headers or MIME parts; the boundary is random.
"""

from __future__ import annotations

import email.utils
import re
import secrets
from collections.abc import Sequence
from typing import Literal

from edgeward.delivery.results import clean_text, parse_reply_text
from edgeward.queue.model import MessageRecord, RecipientRecord

__all__ = ["MAX_RETURNED", "DsnKind", "build_dsn", "expiry_reply", "wants_dsn"]

DsnKind = Literal["failure", "delay"]
MAX_RETURNED = 10 * 1024 * 1024
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE = re.compile(rb"\r\n|\n|\r")
_STATUS = re.compile(r"[45]\.[0-9]{1,3}\.[0-9]{1,3}", re.ASCII)


def wants_dsn(record: MessageRecord, rcpt: RecipientRecord, kind: DsnKind) -> bool:
    """Whether the sender of ``record`` is to hear about ``rcpt`` for ``kind``."""
    if not record.mail_from:
        return False  # RFC 5321 §6.1 / RFC 3461 §6.2: never answer a notification
    notify = {n.strip().upper() for n in rcpt.notify}
    if "NEVER" in notify:
        return False
    if not notify:
        return True
    return ("FAILURE" if kind == "failure" else "DELAY") in notify


def _one_line(text: str, limit: int = 900) -> str:
    return clean_text(text, limit)


def _date(when: float) -> str:
    return email.utils.formatdate(when, localtime=False, usegmt=True)


def _address_type(address: str) -> str:
    # RFC 6533 §3: a non-ASCII address is typed utf-8 rather than rfc822.
    addr = _one_line(address, 512)
    return f"rfc822; {addr}" if addr.isascii() else f"utf-8; {addr}"


def _status(reply_text: str, kind: DsnKind) -> tuple[str, str]:
    """(Status, Diagnostic-Code) for a stored reply line."""
    reply = parse_reply_text(reply_text)
    status = reply.enhanced or ""
    if not _STATUS.fullmatch(status):
        # RFC 3464 §2.3.4: Status is class 4 or 5 with ASCII digits. A stored reply without
        # one, with a success class, or with another script's digits (a remote's text is
        # matched by \d) is reported by its failure class alone.
        status = "4.0.0" if 400 <= reply.code < 500 else "5.0.0"
    if kind == "delay" and status.startswith("5"):
        status = "4.0.0"  # a delayed recipient is by definition in a transient state
    line = " ".join(p for p in (str(reply.code), reply.enhanced or "", reply.text) if p)
    return status, _one_line(f"smtp; {line}")


def _crlf(data: bytes) -> bytes:
    return _LINE.sub(b"\r\n", data)


def _headers_of(original: bytes) -> bytes:
    m = _HEADER_END.search(original)
    head = original[: m.start()] if m else original
    return _crlf(head).rstrip(b"\r\n") + b"\r\n"


def build_dsn(
    record: MessageRecord,
    recipients: Sequence[tuple[RecipientRecord, str]],
    kind: DsnKind,
    original: bytes,
    reporting_mta: str,
    now: float,
    *,
    retry_until: float | None = None,
) -> bytes:
    """The DSN message (CRLF lines) for ``recipients``, each with the reply text it got.

    The caller checks :func:`wants_dsn` for each recipient and never calls this for a null
    sender (it raises ``ValueError`` then, as a last line of defence against bounce loops).
    ``retry_until`` is the expiry time, reported as Will-Retry-Until in a delay DSN.
    """
    if not record.mail_from:
        raise ValueError("no DSN for the null sender")
    if not recipients:
        raise ValueError("a DSN needs at least one recipient")
    host = _one_line(reporting_mta, 255)
    boundary = f"=_edgeward_{secrets.token_hex(12)}"
    sender = _one_line(record.mail_from, 512)
    full = (
        kind == "failure"
        and (record.ret or "FULL").upper() != "HDRS"
        and len(original) <= MAX_RETURNED
        and original.isascii()
    )

    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>",
        f"To: <{sender}>" if sender.isascii() else "To: undisclosed-recipients:;",
        "Subject: "
        + (
            "Undelivered Mail Returned to Sender"
            if kind == "failure"
            else "Delayed Mail (still being retried)"
        ),
        f"Date: {_date(now)}",
        f"Message-ID: <{record.id}.{kind}.{secrets.token_hex(4)}@{host}>",
        "MIME-Version: 1.0",
        # RFC 3834 §5: automatic messages say so, and auto-responders do not answer them.
        "Auto-Submitted: auto-replied",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    msgid = _one_line(record.message_id, 900)
    if msgid.startswith("<") and msgid.endswith(">") and msgid.isascii():
        head += [f"In-Reply-To: {msgid}", f"References: {msgid}"]

    human = [f"This is the mail system at host {host}.", ""]
    if kind == "failure":
        human += [
            "Your message could not be delivered to one or more recipients.",
            "It is attached below." if full else "Its header is attached below.",
        ]
    else:
        human += [
            "Your message has not yet been delivered to one or more recipients.",
            "Delivery will be retried; you do not need to send it again.",
        ]
        if retry_until is not None:
            human.append(f"Delivery will be given up after {_date(retry_until)}.")
    human.append("")
    for rcpt, reply in recipients:
        human.append(f"<{_one_line(rcpt.address, 512)}>: {_one_line(reply)}")

    fields = [f"Reporting-MTA: dns; {host}", f"X-Edgeward-Queue-ID: {record.id}"]
    if record.envid:
        fields.append(f"Original-Envelope-Id: {_one_line(record.envid, 100)}")
    fields.append(f"Arrival-Date: {_date(record.received_at)}")
    per_rcpt: list[str] = []
    for rcpt, reply in recipients:
        status, diagnostic = _status(reply, kind)
        per_rcpt.append("")
        per_rcpt.append(f"Final-Recipient: {_address_type(rcpt.address)}")
        if rcpt.orcpt:
            orcpt = _one_line(rcpt.orcpt, 512)
            per_rcpt.append(f"Original-Recipient: {orcpt if ';' in orcpt else 'rfc822; ' + orcpt}")
        per_rcpt.append(f"Action: {'failed' if kind == 'failure' else 'delayed'}")
        per_rcpt.append(f"Status: {status}")
        per_rcpt.append(f"Diagnostic-Code: {diagnostic}")
        per_rcpt.append(f"Last-Attempt-Date: {_date(now)}")
        if kind == "delay" and retry_until is not None:
            per_rcpt.append(f"Will-Retry-Until: {_date(retry_until)}")

    status_body = "\r\n".join(fields + per_rcpt) + "\r\n"
    utf8 = not status_body.isascii() or not "".join(human).isascii()
    charset = "utf-8" if utf8 else "us-ascii"
    cte = "8bit" if utf8 else "7bit"
    parts: list[bytes] = [
        ("\r\n".join(head) + "\r\n\r\n").encode("ascii", "replace"),
        b"This is a MIME-encapsulated message.\r\n\r\n",
        f"--{boundary}\r\nContent-Type: text/plain; charset={charset}\r\n"
        f"Content-Transfer-Encoding: {cte}\r\n\r\n".encode("ascii"),
        ("\r\n".join(human) + "\r\n\r\n").encode("utf-8"),
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n".encode("ascii"),
        status_body.encode("utf-8") + b"\r\n",
    ]
    if full:
        parts.append(f"--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n".encode("ascii"))
        body = _crlf(original)
        parts.append(body if body.endswith(b"\r\n") else body + b"\r\n")
    else:
        headers = _headers_of(original)
        kind_cte = "7bit" if headers.isascii() else "8bit"
        parts.append(
            f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n"
            f"Content-Transfer-Encoding: {kind_cte}\r\n\r\n".encode("ascii")
        )
        parts.append(headers)
    parts.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(parts)


def expiry_reply(record: MessageRecord, rcpt: RecipientRecord) -> str:
    """The final reply for a recipient whose message expired in the queue."""
    last = rcpt.last_reply or "none"
    if record.require_tls and " 4.7." in f" {last}":
        # RFC 8689 §5: no path met REQUIRETLS's conditions before the message expired.
        return f"550 5.7.10 REQUIRETLS: no secure path to the recipient before expiry, last reply: {last}"
    return f"451 4.4.7 Message expired, last reply: {last}"
