"""Drop-folder delivery: a message becomes ``<id>.eml`` with its envelope in ``<id>.json``.

This module owns delivery through a send connector with ``drop_dir`` (the quick start's
destination, and Exchange's "drop directory" for foreign connectors). The message bytes are
written unchanged; the envelope (sender, recipients, arrival time) goes next to them as JSON, so
a consumer never has to trust a header for the envelope.

Each file is written under a hidden temporary name, flushed, and renamed into place (the rename
is atomic within the folder), the JSON first: when ``<id>.eml`` appears, its envelope is there.
A consumer should ignore names that start with ``.``.

Security: files are created with ``O_EXCL | O_NOFOLLOW`` (a planted file or link is never
written through) and mode 0640, so a consumer in the gateway's group may read but not change
them; the folder is created 0750. The queue id is the only name taken from the message and it
is checked to be a plain file name.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from edgeward.delivery.results import Deferred, Delivered, RecipientResult
from edgeward.queue.model import MessageRecord, RecipientRecord, valid_id
from edgeward.types import Reply

__all__ = ["DropFolder"]

_CREATE = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class DropFolder:
    """Writes messages into one folder."""

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self._dir = directory
        self._fsync = fsync

    async def deliver(
        self, record: MessageRecord, recipients: Sequence[RecipientRecord], data: bytes
    ) -> dict[str, RecipientResult]:
        try:
            await asyncio.to_thread(self._write, record, recipients, data)
        except (OSError, ValueError) as exc:
            reply = Reply(451, "4.3.0", f"Cannot write to drop folder: {exc.__class__.__name__}")
            return {r.address: Deferred(reply) for r in recipients}
        ok = Reply(250, "2.0.0", f"Written to drop folder as {record.id}.eml")
        return {r.address: Delivered(ok) for r in recipients}

    def _write(self, record: MessageRecord, recipients: Sequence[RecipientRecord], data: bytes) -> None:
        if not valid_id(record.id):
            raise ValueError("bad queue id")
        self._dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        envelope = {
            "id": record.id,
            "mail_from": record.mail_from,
            "recipients": [r.address for r in recipients],
            "received_at": record.received_at,
            "message_id": record.message_id,
        }
        self._place(f"{record.id}.json", json.dumps(envelope, ensure_ascii=False, indent=1).encode("utf-8"))
        self._place(f"{record.id}.eml", data)
        if self._fsync:
            fd = os.open(self._dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _place(self, name: str, data: bytes) -> None:
        tmp = self._dir / f".{name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, _CREATE, 0o640)
        try:
            os.fchmod(fd, 0o640)  # the umask may have taken bits off
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self._fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        # A retry after a partial failure replaces the earlier copy instead of failing.
        os.replace(tmp, self._dir / name)
