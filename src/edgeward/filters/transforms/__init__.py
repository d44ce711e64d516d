"""Transforms: what changes a message, once the agents have decided (DESIGN §3: agents decide,
transforms change; two kinds, two names).

- ``internal``: before the agents, headers with Edgeward's own prefix are removed from the mail
  of clients without the ``keep_internal_headers`` right, so no client can forge a stamp;
- ``authresults``: before the agents too, Authentication-Results fields under our authserv-id
  are removed (RFC 8601 §5) from clients without ``keep_internal_headers``;
- ``stamps``: after acceptance, the trace header (``Received``), the headers agents asked for at
  any stage (``Received-SPF`` ...), ``X-Edgeward-SCL``, the ``X-Edgeward-Antispam-Report`` with
  every finding and its score, and ``X-Edgeward-Spam-Flag`` when the stamp threshold is reached.

A later transform (Authentication-Results, ARC seal, attachment stripping, the transport rules'
subject tags, headers and disclaimers) is one more ``Transform`` in the chain ``runtime`` builds;
the session only calls ``Transforms.inbound``, ``Transforms.recipients`` (a transform with a
``recipients`` method may change the envelope: the rules' redirect and blind copy) and
``Transforms.accepted_async`` (which awaits the transforms that write something,
``AsyncTransform``, so their I/O runs off the event loop).

A message kept in a file (``MessageFile``, past the inline budget) goes through
``inbound_file`` and ``accepted_file``: a transform that only adds or removes header fields
(``header_only``: the stamps, and the inbound removals) changes the header block and the body
stays in its file; one that has nothing to do for this message (its ``wanted`` says so) is
skipped; any other (DKIM signing, ARC sealing, a transport rule's change, stripping) needs the
message whole, which is then read into memory once, in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import cast

from edgeward.filters.base import SessionInfo
from edgeward.filters.transforms.authresults import strip_forged_results
from edgeward.filters.transforms.base import Accepted, AsyncTransform, Transform
from edgeward.filters.transforms.internal import strip_internal
from edgeward.filters.transforms.stamps import Stamps
from edgeward.message_file import MessageFile
from edgeward.types import Address

__all__ = ["Accepted", "AsyncTransform", "Transform", "Transforms"]


class Transforms:
    """The transform chain, in order; the stamps come first so they sit on top."""

    def __init__(self, chain: Sequence[Transform] | None = None, *, authserv_id: str = "") -> None:
        self.chain: tuple[Transform, ...] = tuple(chain) if chain is not None else (Stamps(),)
        self.authserv_id = authserv_id  # our Authentication-Results name (server.hostname)
        # Asked once: an isinstance test against a runtime-checkable protocol walks its members
        # each time, 10 us a transform on every message.
        self._async = frozenset(id(t) for t in self.chain if isinstance(t, AsyncTransform))

    def inbound(self, data: bytes, info: SessionInfo) -> bytes:
        data = strip_internal(data, info)
        return strip_forged_results(data, info, self.authserv_id)

    def inbound_file(self, message: MessageFile, info: SessionInfo) -> MessageFile:
        """``inbound`` for a message in a file: the removals touch only its header block."""
        header = self.inbound(message.header, info)
        return message if header == message.header else message.with_header(header)

    async def accepted_file(self, message: MessageFile, accepted: Accepted) -> bytes | MessageFile:
        """``accepted_async`` for a message in a file; still one when no transform needed more
        than its header block."""
        result: bytes | MessageFile = message
        for transform in self.chain:
            if isinstance(result, MessageFile):
                if getattr(transform, "header_only", False):
                    result = result.with_header(transform.apply(result.header, accepted))
                    continue
                wanted = getattr(transform, "wanted", None)
                if wanted is not None and not wanted(accepted):
                    continue
                result = await asyncio.to_thread(result.materialize)  # the body changes: whole
            if id(transform) in self._async:
                result = await cast(AsyncTransform, transform).apply_async(result, accepted)
            else:
                result = transform.apply(result, accepted)
        return result

    def recipients(self, accepted: Accepted) -> tuple[Address, ...]:
        """The envelope recipients after the transforms that change them (transport rules'
        redirect and blind copy), asked before ``accepted`` so the queue record carries them."""
        rcpts = accepted.recipients
        for transform in self.chain:
            change = getattr(transform, "recipients", None)
            if change is not None:
                rcpts = change(replace(accepted, recipients=rcpts))
        return rcpts

    def accepted(self, data: bytes, accepted: Accepted) -> bytes:
        """The chain on the caller's thread (a transform's writes block it)."""
        for transform in self.chain:
            data = transform.apply(data, accepted)
        return data

    async def accepted_async(self, data: bytes, accepted: Accepted) -> bytes:
        """The chain as the session runs it: the same result, writes off the event loop."""
        for transform in self.chain:
            if id(transform) in self._async:
                data = await cast(AsyncTransform, transform).apply_async(data, accepted)
            else:
                data = transform.apply(data, accepted)
        return data
