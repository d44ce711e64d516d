"""Anti-virus and file analysis: the MIME walk, archives and the scan engines.

- ``walk`` (with ``decode``, ``archives``, ``names``, ``truetype``): the one bounded MIME walk
  per message, producing the items every engine scans.
- ``clamd``: ClamAV through clamd's INSTREAM command (``ClamdScanner``).
- ``policy``: Forefront's scan-engine bias: run every engine at once, each with its own time
  limit, and say whether enough of them answered (``MultiEnginePolicy``).

Engines report hits, never verdicts; the ``antivirus`` agent turns a policy result into a reply.
"""

from __future__ import annotations

from edgeward.ports import ScanEngineError


class ItemTooLarge(ScanEngineError):
    """An item is larger than an engine is configured to take (clamd's StreamMaxLength).

    Unlike an outage this does not pass with time, so the policy reports it apart and the agent
    can refuse the message for good (``[antivirus] unscannable``) instead of deferring it for days.
    """
