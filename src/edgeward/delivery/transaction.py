"""One mail transaction on an open, greeted (and secured) SMTP session: MAIL, RCPT..., DATA.

This module owns what a next hop must offer for a message and the per-recipient results of
the transaction (RFC 5321 §3.3, §4.2):

* 8-bit data (RFC 6152 §3) goes only to a peer announcing 8BITMIME, as ``BODY=8BITMIME``;
  Edgeward does not downgrade MIME, so a peer without it fails the host with ``554 5.6.3``.
  The same holds for SMTPUTF8 (RFC 6531 §3.4, ``553 5.6.7``), for a SIZE limit below the
  message (RFC 1870, ``552 5.3.4``) and for REQUIRETLS (RFC 8689 §4.2.1, ``550 5.7.30``).
  These are permanent for the host; the client tries the next one.
* A 2xx after DATA delivers every accepted recipient; a 4xx, a time-out or a lost connection
  defers them; a 5xx fails them. A 5xx to MAIL fails the whole transaction.
* DSN parameters (RFC 3461 §4.1) are relayed as asked.

Line endings (RFC 5321 §2.3.8, §4.5.2): the body goes out through ``delivery.body``, which
sends CRLF lines only and doubles a leading '.', in bounded chunks.

Security: addresses are sent inside ``<>`` and aiosmtplib refuses control characters in
commands, so a recipient cannot inject one; remote replies are cleaned by
:func:`~edgeward.delivery.results.reply_from_remote` before they are stored anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import aiosmtplib

from edgeward.delivery.body import send_data
from edgeward.delivery.results import Deferred, Delivered, Failed, RecipientResult, reply_from_remote
from edgeward.queue.model import MessageRecord, RecipientRecord
from edgeward.types import Reply

__all__ = ["HostOutcome", "needs_8bit", "needs_smtputf8", "remote_reply", "transaction"]

_DSN_NOTIFY = {"NEVER", "SUCCESS", "FAILURE", "DELAY"}


@dataclass
class HostOutcome:
    """What one address gave: final results, or a reply and whether to try the next host."""

    results: dict[str, RecipientResult] | None = None
    reply: Reply | None = None
    permanent: bool = False
    retry_in_clear: bool = False
    notes: list[str] = field(default_factory=list)
    reusable: bool = False  # the transaction ended with a DATA reply: the session can take another


def needs_8bit(data: bytes) -> bool:
    return not data.isascii()


def needs_smtputf8(record: MessageRecord, recipients: Sequence[RecipientRecord]) -> bool:
    return not record.mail_from.isascii() or any(not r.address.isascii() for r in recipients)


def remote_reply(code: int, message: str, where: str) -> Reply:
    reply = reply_from_remote(code, message)
    return Reply(reply.code, reply.enhanced, f"{reply.text} (from {where})".strip())


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def _mail_options(
    smtp: aiosmtplib.SMTP,
    where: str,
    record: MessageRecord,
    recipients: Sequence[RecipientRecord],
    data: bytes,
) -> list[str] | HostOutcome:
    """The MAIL FROM parameters, or the outcome when this host lacks what the message needs."""
    options: list[str] = []
    if smtp.supports_extension("size"):
        limit = _int(smtp.esmtp_extensions.get("size", ""))
        if limit and len(data) > limit:
            return HostOutcome(reply=Reply(552, "5.3.4", f"Message exceeds {where} limit"), permanent=True)
        options.append(f"SIZE={len(data)}")
    if needs_8bit(data):
        if not smtp.supports_extension("8bitmime"):
            reply = Reply(554, "5.6.3", f"8-bit message but {where} does not offer 8BITMIME")
            return HostOutcome(reply=reply, permanent=True)
        options.append("BODY=8BITMIME")
    if needs_smtputf8(record, recipients):
        if not smtp.supports_extension("smtputf8"):
            reply = Reply(553, "5.6.7", f"Non-ASCII address but {where} does not offer SMTPUTF8")
            return HostOutcome(reply=reply, permanent=True)
        options.append("SMTPUTF8")
    if record.require_tls:
        if not smtp.supports_extension("requiretls"):
            reply = Reply(550, "5.7.30", f"REQUIRETLS support required but {where} does not offer it")
            return HostOutcome(reply=reply, permanent=True)
        options.append("REQUIRETLS")
    return options


async def transaction(
    smtp: aiosmtplib.SMTP,
    where: str,
    record: MessageRecord,
    recipients: Sequence[RecipientRecord],
    data: bytes,
) -> HostOutcome:
    """MAIL, RCPT for each recipient, DATA, on a session that is greeted (and TLS'd)."""
    options = _mail_options(smtp, where, record, recipients, data)
    if isinstance(options, HostOutcome):
        return options
    dsn = smtp.supports_extension("dsn")

    resp = await _command(smtp, b"MAIL", f"FROM:<{record.mail_from}>", options)
    if resp.code != 250:
        reply = remote_reply(resp.code, resp.message, where)
        if reply.is_permanent:
            return HostOutcome(results={r.address: Failed(reply) for r in recipients})
        return HostOutcome(reply=reply)

    results: dict[str, RecipientResult] = {}
    accepted: list[str] = []
    for rcpt in recipients:
        rcpt_opts = []
        notify = [n.upper() for n in rcpt.notify if n.upper() in _DSN_NOTIFY]
        if dsn and notify:
            rcpt_opts.append("NOTIFY=" + ",".join(notify))  # RFC 3461 §4.1: relay what was asked
        try:
            resp = await _command(smtp, b"RCPT", f"TO:<{rcpt.address}>", rcpt_opts)
        except (aiosmtplib.SMTPException, OSError) as exc:
            lost = Reply(451, "4.4.2", f"Connection to {where} lost during RCPT: {exc}")
            for other in recipients:
                results.setdefault(other.address, Deferred(lost))
            return HostOutcome(results=results)
        if resp.code in (250, 251):
            accepted.append(rcpt.address)
        else:
            reply = remote_reply(resp.code, resp.message, where)
            results[rcpt.address] = Failed(reply) if reply.is_permanent else Deferred(reply)
    if not accepted:
        return HostOutcome(results=results)

    try:
        resp = await send_data(smtp, data)
        final = remote_reply(resp.code, resp.message, where)
    except aiosmtplib.SMTPResponseException as exc:
        final = remote_reply(exc.code, exc.message, where)
    except (aiosmtplib.SMTPException, OSError) as exc:
        # The message may or may not have arrived (RFC 5321 §6.1 accepts a duplicate).
        final = Reply(451, "4.4.2", f"Connection to {where} lost during DATA: {exc}")
    outcome: RecipientResult
    if final.is_positive:
        outcome = Delivered(final)
    elif final.is_transient:
        outcome = Deferred(final)
    else:
        outcome = Failed(final)
    for address in accepted:
        results[address] = outcome
    return HostOutcome(results=results, reusable=isinstance(outcome, Delivered | Failed))


async def _command(
    smtp: aiosmtplib.SMTP, verb: bytes, arg: str, options: Sequence[str]
) -> aiosmtplib.SMTPResponse:
    # SMTPUTF8 addresses travel as UTF-8 (RFC 6531 §3.2); others are ASCII by construction.
    parts = [arg.encode("utf-8"), *(o.encode("ascii") for o in options)]
    return await smtp.execute_command(verb, *parts)
