"""The message at end of data, parsed once and shared by every agent that looks at it.

The header block is parsed by the session for the trace header and the queue record anyway;
the MIME tree (``content.mime``, bounded in depth, parts and size) is parsed on first use, so a
pipeline whose agents only read headers never pays for it, and one with several content agents
(classifier, anti-virus, attachment filter) pays once. The scanning walk (``scanning.walk``:
every leaf decoded, archives unpacked, for the scan engines and the attachment filter) is
cached the same way, and is the anti-virus and attachment agents' one walk of the message.

A message larger than the inline budget comes as a ``MessageFile`` (``from_file``): ``data`` is
then empty, the walk reads the file in bounded pieces (``scanning.walk_file``), and the MIME tree
for the content filter is built from the message's text window only
(``message_file.TEXT_WINDOW``, which says why).
"""

from __future__ import annotations

from edgeward.content.mime import ParsedMessage, parse_message
from edgeward.headers import HeaderBlock
from edgeward.message_file import MessageFile, text_of
from edgeward.scanning.walk import Walk, WalkLimits, walk_message
from edgeward.scanning.walk_file import walk_file


class MessageView:
    """The raw bytes, the header block and (lazily) the MIME tree of one message."""

    __slots__ = ("_mime", "_text", "_walk", "data", "file", "headers", "walk_limits")

    def __init__(
        self,
        data: bytes,
        headers: HeaderBlock,
        walk_limits: WalkLimits | None = None,
        file: MessageFile | None = None,
    ) -> None:
        self.data = data  # empty when the message is kept in ``file``
        self.headers = headers
        self.walk_limits = walk_limits
        self.file = file
        self._mime: ParsedMessage | None = None
        self._walk: Walk | None = None
        self._text: bytes | None = None

    @classmethod
    def from_file(
        cls, message: MessageFile, headers: HeaderBlock, walk_limits: WalkLimits | None = None
    ) -> MessageView:
        """The view of a message kept in a file: nothing of it is read until an agent asks."""
        return cls(b"", headers, walk_limits, message)

    @property
    def size(self) -> int:
        return self.file.size if self.file is not None else len(self.data)

    @property
    def text(self) -> bytes:
        """What text readers read: the message, or a file message's text window, read once."""
        if self._text is None:
            self._text = text_of(self.data, self.file)
        return self._text

    @property
    def mime(self) -> ParsedMessage:
        if self._mime is None:
            # A message in a file: only its beginning (module docstring); a parse of the whole
            # would hold decoded copies of every part.
            self._mime = parse_message(self.text)
        return self._mime

    @property
    def walk(self) -> Walk:
        """The scanning walk, made on first use (``walk_limits``, or the defaults)."""
        if self._walk is None:
            if self.file is not None:
                self._walk = walk_file(self.file, self.walk_limits)
            else:
                self._walk = walk_message(self.data, self.walk_limits)
        return self._walk

    @property
    def parsed(self) -> bool:
        """Whether the MIME tree has been built (for tests holding the parse-once promise)."""
        return self._mime is not None

    def release(self) -> None:
        """Drop the MIME tree and the walk once the agents are done with them.

        Each holds decoded copies of the message's parts (a plain part of 10 MB is 10 MB
        more), and the session still awaits the accepted transforms and the spool's commit
        after the agents; released, those copies are gone before the stamped copy is made.
        A later use parses again.
        """
        self._mime = None
        self._walk = None
        self._text = None
