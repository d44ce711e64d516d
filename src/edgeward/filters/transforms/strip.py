"""Attachment stripping: blocked attachments replaced by a short text part, the original kept.

Exchange's ``Strip`` action: the attachment filter (``filters.agents.attachments``) found
attachments its lists block and let the message go on; once it is accepted, this transform
walks it again (the same walk, so the same items: the walk is deterministic), replaces each
MIME entity holding a blocked item with a ``text/plain`` part that says what was removed and
why (``[attachments] admin_message``, then one line per item and the rule it broke), and puts
the whole original message in the quarantine, so an administrator can release it.

The splice works on the original bytes (``scanning.walk.Span``): every other part, header and
byte of the message stays as it was, and the result parses back with the other parts intact.
An item found inside an encoded part (a base64 ``message/rfc822``) or an archive takes the
whole entity that holds it. A message whose root body is the blocked item keeps its header,
minus its ``Content-*`` fields, which are replaced by the text part's.

It changes nothing in observe-only mode, for a message the policy quarantines or drops (the
quarantine keeps the original then), or for a signed message (the agent quarantined or refused
those instead: stripping would break the signature). A quarantine failure is logged and the
stripped message still delivered: a transform never refuses mail, and the attachment must not
be delivered either.

The quarantine entry carries the queue record the message arrived with (``Accepted.record``:
envelope, client, connector, DSN parameters), as the quarantine of a whole message does, so
``edgeward quarantine release`` re-queues the original exactly as it came. The session awaits
``apply_async``: the second walk, the splice and the fsync'd quarantine write run in a worker
thread, before the ``250``, so the original is on disk before the client hears it was taken.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
from collections.abc import Callable

from edgeward.config.attachments import AttachmentsConfig
from edgeward.filters.agents.attachments import NAME, AttachmentRules, Block, walk_limits
from edgeward.filters.transforms.base import Accepted
from edgeward.headers import header_end, parse_headers, remove_fields, sanitize
from edgeward.quarantine.entry import held_entry
from edgeward.quarantine.store import QuarantineStore
from edgeward.queue.model import record_to_dict
from edgeward.scanning.walk import Span, walk_message
from edgeward.types import Action

__all__ = ["StripAttachments", "strip_blocks"]

log = logging.getLogger("edgeward.transforms")

REPLACEMENT_NAME = "removed-attachment.txt"


def _text_part(admin_message: str, blocks: list[Block]) -> tuple[bytes, bytes]:
    """The replacement's Content-* fields and its quoted-printable body (CRLF)."""
    lines = [admin_message, ""]
    lines += [f"Removed: {sanitize(b.shown, 300)} ({b.rule})" for b in blocks[:50]]
    body = binascii.b2a_qp("\n".join(lines).encode("utf-8") + b"\n").replace(b"\r\n", b"\n")
    fields = (
        b'Content-Type: text/plain; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b'Content-Disposition: attachment; filename="' + REPLACEMENT_NAME.encode() + b'"\r\n'
    )
    return fields, body.replace(b"\n", b"\r\n")


def _outermost(blocks: list[Block]) -> list[tuple[Span, list[Block]]]:
    """The spans to replace, each with its blocks; a span inside another goes with the outer."""
    by_span: dict[Span, list[Block]] = {}
    for block in blocks:
        if block.entry.span is not None:
            by_span.setdefault(block.entry.span, []).append(block)
    kept: list[tuple[Span, list[Block]]] = []
    for span in sorted(by_span, key=lambda s: (s.start, -s.end)):
        if kept and span.start < kept[-1][0].end:
            kept[-1][1].extend(by_span[span])
            continue
        kept.append((span, by_span[span]))
    return kept


def strip_blocks(data: bytes, blocks: list[Block], admin_message: str) -> bytes:
    """``data`` with every entity holding a blocked item replaced by a text part."""
    for span, held in reversed(_outermost(blocks)):
        fields, body = _text_part(admin_message, held)
        if span.root:
            end = header_end(data)
            head = remove_fields(data[:end], (b"content-",))
            head = head[:-2] if head.endswith(b"\r\n\r\n") else head + b"\r\n"
            data = head + fields + b"\r\n" + body
        else:
            data = data[: span.start] + fields + b"\r\n" + body + data[span.end :]
    return data


class StripAttachments:
    """Replaces blocked attachments of an accepted message; quarantines the original."""

    name = "attachment-strip"

    def __init__(
        self,
        cfg: AttachmentsConfig,
        quarantine: Callable[[], QuarantineStore] | None = None,
        *,
        observe_only: bool = False,
    ) -> None:
        self.cfg = cfg
        self.rules = AttachmentRules(cfg)
        self.limits = walk_limits(cfg)
        self.quarantine = quarantine
        self.observe_only = observe_only

    def wanted(self, accepted: Accepted) -> bool:
        """Whether ``accepted`` has attachments to strip (by its verdict: no walk needed)."""
        verdict = accepted.verdict
        if self.observe_only or self.cfg.action != "strip":
            return False
        if verdict.action in (Action.QUARANTINE, Action.DISCARD):
            return False
        return any(f.name == "ATTACH_BLOCKED" and f.agent == NAME for f in verdict.findings)

    async def apply_async(self, data: bytes, accepted: Accepted) -> bytes:
        if not self.wanted(accepted):
            return data
        return await asyncio.to_thread(self.apply, data, accepted)

    def apply(self, data: bytes, accepted: Accepted) -> bytes:
        if not self.wanted(accepted):
            return data
        walk = walk_message(data, self.limits)
        blocks = self.rules.blocked(walk)
        if not blocks or any(b.entry.signed for b in blocks):
            return data
        stripped = strip_blocks(data, blocks, self.cfg.admin_message)
        self._keep_original(data, accepted, blocks)
        log.info("message %s: stripped %d attachment(s): %s", accepted.msg_id, len(blocks),
                 "; ".join(b.detail for b in blocks[:5]))  # fmt: skip
        return stripped

    def _keep_original(self, data: bytes, accepted: Accepted, blocks: list[Block]) -> None:
        if self.quarantine is None:
            log.warning("message %s: no quarantine; the stripped original is not kept", accepted.msg_id)
            return
        headers = parse_headers(data)
        entry = held_entry(
            accepted.verdict, mail_from=str(accepted.mail_from) if accepted.mail_from is not None else "",
            recipients=(str(r) for r in accepted.recipients), subject=headers.get("Subject"),
            message_id=headers.get("Message-ID"), client_ip=accepted.info.peer.ip,
            queue_record=record_to_dict(accepted.record) if accepted.record is not None else None,
            reason=f"{NAME} (stripped)",
        )  # fmt: skip
        try:
            qid = self.quarantine().put(entry, data)
        except OSError:
            log.exception("message %s: the original of a stripped message could not be quarantined",
                          accepted.msg_id)  # fmt: skip
            return
        log.info("message %s: original quarantined as %s (%s)", accepted.msg_id, qid, blocks[0].detail)
