"""The e-mail channel: notices to ``[notify] admin_addresses`` through the gateway's own queue.

A notice is built like a DSN: a message the gateway writes itself, put in the spool with a
``MessageRecord`` (connector ``notify``) and delivered by the queue manager with the rest of
the mail, so it survives a restart and follows the send connectors. Its reverse path is null,
so no bounce of a notice can ever loop back; From is the postmaster of the first accepted
domain (the host name when there is none); ``Auto-Submitted: auto-generated`` (RFC 3834) keeps
auto-responders quiet.

The envelope sender of an infected message hears nothing unless ``notify_senders`` is on
(backscatter), and even then only when the message was quarantined or discarded: a rejected
message is already reported to its sender by the sending server. Sender notices go to the
distinct senders among a batch's samples, so they are rate-limited with it.

Security: the subject is rendered from cleaned values and cleaned again (``templates``); the
message is built by ``email.message.EmailMessage`` under ``policy.SMTP``, which encodes
non-ASCII headers (RFC 2047) and refuses a header value holding a line break, so a subject,
sender or virus name from mail can never add a header (CVE-2024-6923).
"""

from __future__ import annotations

import email.policy
import email.utils
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from email.message import EmailMessage

from edgeward.notify.limiter import Batch
from edgeward.notify.templates import Rendered, Templates, context
from edgeward.queue.model import MessageRecord, RecipientRecord

__all__ = ["EmailChannel", "build_notice"]

Accept = Callable[[MessageRecord, bytes], Awaitable[str]]
_ADDRESS = re.compile(r"^[^\s@<>\"(),;:\\\[\]]{1,64}@[A-Za-z0-9.-]{1,253}$")


def build_notice(rendered: Rendered, sender: str, to: Sequence[str], hostname: str, now: float) -> bytes:
    """The notice as CRLF bytes."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = f"Edgeward <{sender}>"
    msg["To"] = ", ".join(to)
    msg["Subject"] = rendered.subject
    msg["Date"] = email.utils.formatdate(now, usegmt=True)
    msg["Message-ID"] = f"<notify.{secrets.token_hex(8)}@{hostname}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(rendered.body)
    return msg.as_bytes(policy=email.policy.SMTP)


class EmailChannel:
    """Renders each notice and queues it for ``admins`` (and, if asked, for infected senders)."""

    name = "email"

    def __init__(
        self,
        accept: Accept,
        on_queued: Callable[[str], None],
        templates: Templates,
        *,
        admins: Sequence[str],
        sender: str,
        hostname: str,
        interval: float,
        notify_senders: bool = False,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._accept = accept
        self._on_queued = on_queued
        self.templates = templates
        self.admins = tuple(admins)
        self.sender = sender
        self.hostname = hostname
        self.interval = interval
        self.notify_senders = notify_senders
        self._now = now

    async def send(self, batch: Batch) -> str:
        values = context(batch, self.hostname, self.interval)
        rendered = self.templates.render(batch.first.kind, values)
        ids = [await self._queue(rendered, self.admins)]
        if self.notify_senders and batch.first.kind == "virus":
            ids += await self._tell_senders(batch)
        return "queued as " + ", ".join(ids)

    async def _tell_senders(self, batch: Batch) -> list[str]:
        ids: list[str] = []
        seen: set[str] = set()
        for event in batch.samples:
            sender = event.fields.get("sender", "")
            if event.fields.get("action") not in ("quarantine", "discard"):
                continue
            if not _ADDRESS.match(sender) or sender.lower() in seen:
                continue
            seen.add(sender.lower())
            one = Batch(batch.key, [event], 1)
            rendered = self.templates.render("virus-sender", context(one, self.hostname, self.interval))
            ids.append(await self._queue(rendered, (sender,)))
        return ids

    async def _queue(self, rendered: Rendered, to: Sequence[str]) -> str:
        now = self._now()
        data = build_notice(rendered, self.sender, to, self.hostname, now)
        message_id = ""
        for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                message_id = line.split(b":", 1)[1].strip().decode("ascii")
        record = MessageRecord(
            id="", mail_from="", recipients=tuple(RecipientRecord(a) for a in to), received_at=now,
            size=len(data), connector="notify", message_id=message_id,
        )  # fmt: skip
        msg_id = await self._accept(record, data)
        self._on_queued(msg_id)
        return msg_id

    async def close(self) -> None:
        return None
