"""Anti-virus and file analysis: the MIME walk, archives and the scan engines.

- ``walk`` (with ``decode``, ``archives``, ``names``, ``truetype``; ``walk_file`` is the same
  walk over a message kept in a file): the one bounded MIME walk
  per message, producing the items every engine scans.
- ``clamd``: ClamAV through clamd's INSTREAM command (``ClamdScanner``).
- ``policy``: Forefront's scan-engine bias: run every engine at once, each with its own time
  limit, and say whether enough of them answered (``MultiEnginePolicy``).

Engines report hits, never verdicts; the ``antivirus`` agent turns a policy result into a reply.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgeward.ports import ScanEngineError, ScanItem


class ItemTooLarge(ScanEngineError):
    """An item is larger than an engine is configured to take (clamd's StreamMaxLength).

    Unlike an outage this does not pass with time, so the policy reports it apart and the agent
    can refuse the message for good (``[antivirus] unscannable``) instead of deferring it for days.
    """


def in_memory(items: Sequence[ScanItem]) -> list[ScanItem]:
    """The items an engine that reads bytes in memory (YARA, the Office engine) can scan: not a
    message read from its file, nor a partial leaf (the hash list reads a partial leaf's
    ``sha256`` instead). Such engines are configured only
    with ``WalkLimits.hold_leaves``, under which the walk makes no partial item; skipping them
    here keeps a wrong configuration from reading a leaf's beginning as the whole of it."""
    return [item for item in items if not item.partial and item.source is None]
