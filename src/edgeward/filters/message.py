"""The message at end of data, parsed once and shared by every agent that looks at it.

The header block is parsed by the session for the trace header and the queue record anyway;
the MIME tree (``content.mime``, bounded in depth, parts and size) is parsed on first use, so a
pipeline whose agents only read headers never pays for it, and one with several content agents
(classifier, anti-virus, attachment filter) pays once.
"""

from __future__ import annotations

from edgeward.content.mime import ParsedMessage, parse_message
from edgeward.headers import HeaderBlock


class MessageView:
    """The raw bytes, the header block and (lazily) the MIME tree of one message."""

    __slots__ = ("_mime", "data", "headers")

    def __init__(self, data: bytes, headers: HeaderBlock) -> None:
        self.data = data
        self.headers = headers
        self._mime: ParsedMessage | None = None

    @property
    def mime(self) -> ParsedMessage:
        if self._mime is None:
            self._mime = parse_message(self.data)
        return self._mime

    @property
    def parsed(self) -> bool:
        """Whether the MIME tree has been built (for tests holding the parse-once promise)."""
        return self._mime is not None
