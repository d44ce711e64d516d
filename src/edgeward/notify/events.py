"""What the gateway tells its administrators about: events, and the sink agents emit them into.

An :class:`Event` is a frozen value: a ``kind`` (virus, engine_down, ...), a severity, a one-line
summary and a few named fields. The parts of the gateway that notice something (the antivirus
agent, the scan policy, the signature updates, the quarantine watch) hold an optional
:class:`EventSink` and call ``emit``, which never blocks and never raises: the notifier queues
the event off the SMTP path (``notify.notifier``).

Security: most field values come from mail (subjects, senders, signature names reported by an
engine about hostile content). :func:`clean` flattens every value to one line of printable
characters, bounded, when the event is made, so no channel (a mail header, a syslog frame, a
JSON body) ever sees a CR, LF or other control character from a sender (CVE-2024-6923 is the
header injection this keeps out of the e-mail channel).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = ["KINDS", "SEVERITIES", "Event", "EventSink", "Kind", "Severity", "clean"]

Kind = Literal[
    "virus",
    "engine_down",
    "engine_up",
    "signatures_stale",
    "signature_update_failed",
    "quarantine_growth",
    "directory_stale",
    "test",
]
KINDS: tuple[Kind, ...] = (
    "virus", "engine_down", "engine_up", "signatures_stale", "signature_update_failed",
    "quarantine_growth", "directory_stale", "test",
)  # fmt: skip
Severity = Literal["critical", "error", "warning", "notice", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "error", "warning", "notice", "info")

MAX_FIELDS = 16
MAX_VALUE = 300
# C0, DEL, C1, the Unicode line and paragraph separators and bidi overrides: none may reach a
# header, a syslog frame or a log line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def clean(value: object, limit: int = MAX_VALUE) -> str:
    """``value`` as one line: control characters become one space, the length is bounded."""
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class Event:
    """One thing an administrator should hear about. Use :meth:`make`, which cleans the values."""

    kind: Kind
    severity: Severity
    summary: str
    fields: Mapping[str, str] = field(default_factory=dict)
    at: float = 0.0

    @classmethod
    def make(
        cls, kind: Kind, severity: Severity, summary: str, at: float | None = None, **fields: object
    ) -> Event:
        """An event with every value cleaned; field names must be identifiers (templates use them)."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r}")
        values: dict[str, str] = {}
        for name, value in list(fields.items())[:MAX_FIELDS]:
            if not _FIELD_NAME.match(name):
                raise ValueError(f"invalid event field name {name!r}")
            if value is None:
                continue
            if isinstance(value, (list, tuple, set, frozenset)):
                value = ", ".join(str(v) for v in value)
            values[name] = clean(value)
        when = time.time() if at is None else at
        return cls(kind, severity, clean(summary, 500), values, when)

    @property
    def key(self) -> str:
        """What rate limiting groups by: the kind, and the engine for an engine's own news (one
        engine going down must not hold back the news that another did)."""
        engine = self.fields.get("engine", "") if self.kind in ("engine_down", "engine_up") else ""
        return f"{self.kind}:{engine}" if engine else self.kind


class EventSink(Protocol):
    """Where events go; ``emit`` returns at once and never raises."""

    def emit(self, event: Event) -> None: ...
