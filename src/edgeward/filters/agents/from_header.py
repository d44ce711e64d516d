"""The From rule at EOD: a message has exactly one well-formed From field (RFC 5322 §3.6).

RFC 5322 §3.6 requires exactly one ``From:`` in every message, and its table of field counts
allows no second one. A message without one names no author, one with two lets the receiving
client and a DMARC check look at different authors (the "multiple From" bypass), and
``From :`` (white space before the colon, the obsolete syntax of §4.5.6 that may only be read,
never generated) is parsed as From by some readers and ignored by others, which opens the same
gap. So each is refused, or quarantined, before the ``250``:

- ``reject`` (default): ``550 5.6.0``. Class 6 of RFC 3463 is for faults in the message content
  rather than in policy (5.7.x) or addressing (5.1.x), and no subject code there is specific to
  header syntax, so 5.6.0 "other or undefined media error" is the precise one; Postfix and
  Gmail answer malformed headers with 5.6.0 / 5.7.x, and the 5.6 class tells a sender to fix the
  message, not to ask for rights.
- ``quarantine``: accepted with ``250`` and held in the quarantine for an administrator.
- ``off``: the agent is not in the pipeline (``agents.from_header``).

An empty ``From:`` (no author) counts as malformed.
"""

from __future__ import annotations

from typing import Literal

from edgeward.filters.base import Stage, StageContext
from edgeward.headers import header_end, parse_headers
from edgeward.types import Action, Finding, Outcome, Reply

__all__ = ["FromHeader", "from_problems"]

FromMode = Literal["reject", "quarantine"]


def _refusal(text: str) -> Reply:
    return Reply(550, "5.6.0", f"{text} (RFC 5322 section 3.6)")


def from_problems(data: bytes) -> list[Finding]:
    """What is wrong with the From fields of ``data`` (CRLF line ends); empty when nothing is."""
    head = data[: header_end(data)]
    spaced = 0
    for line in head.split(b"\r\n"):
        colon = line.find(b":")
        if colon <= 0 or line[:1] in (b" ", b"\t"):
            continue
        name = line[:colon]
        if name != name.rstrip(b" \t") and name.rstrip(b" \t").lower() == b"from":
            spaced += 1
    values = parse_headers(data).get_all("From")  # the tolerant reader counts "From :" too
    found: list[Finding] = []
    if not values:
        found.append(Finding("FROM_MISSING", "from-header", "no From field"))
    elif len(values) > 1:
        found.append(Finding("FROM_MULTIPLE", "from-header", f"{len(values)} From fields"))
    if spaced:
        found.append(Finding("FROM_MALFORMED", "from-header", "white space before the colon of From"))
    elif any(not v.strip() for v in values):
        found.append(Finding("FROM_MALFORMED", "from-header", "empty From field"))
    return found


class FromHeader:
    """Refuse (or quarantine) mail without exactly one well-formed From field."""

    name = "from-header"
    stages = frozenset({Stage.EOD})
    antispam = False
    fail_open = False

    def __init__(self, mode: FromMode = "reject") -> None:
        self.mode = mode

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        found = from_problems(ctx.data if ctx.spooled is None else ctx.spooled.header)
        if not found:
            return Outcome.proceed()
        if self.mode == "quarantine":
            return Outcome(Action.QUARANTINE, None, tuple(found))
        first = found[0].name
        text = {
            "FROM_MISSING": "Message has no From header field",
            "FROM_MULTIPLE": "Message has more than one From header field",
        }.get(first, "Message has a malformed From header field")
        return Outcome.reject(_refusal(text), *found)
