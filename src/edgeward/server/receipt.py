"""What the session writes about an accepted message: the open transaction, the trace header,
and the queue record.

Security: everything copied from the client (HELO name, Message-ID, ESMTP parameters) passes
through ``headers.sanitize`` or was checked by the SMTP parser, so no client can inject a line
into the headers or the queue metadata.
"""

from __future__ import annotations

import time

from edgeward.filters.base import SessionInfo
from edgeward.filters.policy import StageDecision
from edgeward.filters.transforms.stamps import trace_header
from edgeward.headers import HeaderBlock, sanitize
from edgeward.message_file import MessageFile, size_of
from edgeward.queue.model import MessageRecord, RecipientRecord
from edgeward.smtp import events as ev
from edgeward.types import Address


class Transaction:
    """The mail transaction in progress: sender, recipients and their parameters."""

    __slots__ = (
        "bdat_started", "close_after", "mail_from", "mail_params", "rcpt_params", "rcpts", "smtputf8",
    )  # fmt: skip

    def __init__(self, mail: ev.MailFrom) -> None:
        self.mail_from: Address = mail.address
        self.mail_params: dict[str, str | None] = {k.upper(): v for k, v in mail.params}
        self.smtputf8 = mail.smtputf8
        self.rcpts: list[Address] = []
        self.rcpt_params: list[dict[str, str | None]] = []
        self.bdat_started = False
        # A recipient refusal that asked to close once the recipients are done (StageDecision).
        self.close_after: StageDecision | None = None

    def replace_recipients(self, rcpts: tuple[Address, ...]) -> bool:
        """Take ``rcpts`` as the recipients (a transport rule's redirect or blind copy); those
        kept keep their DSN parameters, added ones have none. False when nothing changed."""
        if list(rcpts) == self.rcpts:
            return False
        kept = dict(zip(self.rcpts, self.rcpt_params, strict=True))
        self.rcpts, self.rcpt_params = list(rcpts), [kept.get(r, {}) for r in rcpts]
        return True


def received_header(msg_id: str, tx: Transaction, info: SessionInfo, fqdn: str, tls_active: bool) -> str:
    """The trace header of ``tx`` (assembled by the stamps transform)."""
    return trace_header(msg_id, info, fqdn, tls_active=tls_active, smtputf8=tx.smtputf8, rcpts=tx.rcpts)


def queue_record(
    msg_id: str, tx: Transaction, data: bytes | MessageFile, headers: HeaderBlock, info: SessionInfo
) -> MessageRecord:
    """The spool metadata of an accepted message, DSN parameters included (RFC 3461)."""
    return MessageRecord(
        id=msg_id,
        mail_from=str(tx.mail_from),
        recipients=tuple(
            RecipientRecord(
                address=str(r),
                notify=tuple((p.get("NOTIFY") or "").upper().split(",")) if p.get("NOTIFY") else (),
                orcpt=p.get("ORCPT"),
            )
            for r, p in zip(tx.rcpts, tx.rcpt_params, strict=True)
        ),
        received_at=time.time(),
        size=size_of(data),
        client_ip=info.peer.ip,
        client_helo=info.helo,
        connector=info.connector.name,
        message_id=sanitize(headers.get("Message-ID").strip(), 500),
        envid=tx.mail_params.get("ENVID"),
        ret=tx.mail_params.get("RET"),
        require_tls="REQUIRETLS" in tx.mail_params,
        # RFC 8689 §5: the header is ignored when REQUIRETLS was also given.
        tls_optional="REQUIRETLS" not in tx.mail_params
        and headers.get("TLS-Required").strip().lower() == "no",
    )
