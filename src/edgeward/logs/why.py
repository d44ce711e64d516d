"""Reading the tracking log back: times as operators write them, and the "why" of a verdict.

Shared by ``edgeward track`` and the web console, so both show the very same lines. Entries are
read as written, and mail senders write much of them: control characters are escaped
(:func:`escape_controls`) so no terminal escape in a subject reaches a tty, and a damaged line
(a score that is no number, a field that is no string) is shown, never a failure.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from edgeward.ports import Clock, SystemClock

__all__ = ["escape_controls", "explain", "findings_cell", "parse_when"]

_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """``text`` with control characters escaped, so terminal escapes in mail cannot reach a tty."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def parse_when(text: str, clock: Clock | None = None) -> datetime:
    """An aware UTC datetime from ``2024-05-01``, ``2024-05-01T12:30:00+02:00`` or ``2h`` (ago);
    ``ValueError`` for anything else."""
    m = _AGE.match(text)
    if m:
        now = (clock or SystemClock()).now()
        return datetime.fromtimestamp(now, UTC) - timedelta(
            seconds=int(m.group(1)) * _UNITS[m.group(2).lower()]
        )
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO date/time nor an age such as 2h or 3d") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def findings_cell(entry: dict[str, Any]) -> str:
    """``NAME=score`` of every finding an entry carries, then the rule that decided."""
    found = entry.get("findings") or []
    names = ", ".join(f"{f.get('name', '')}={_num(f.get('score'))}" for f in found if isinstance(f, dict))
    rule = str(entry.get("decided_by") or "")
    return "; ".join(x for x in (names, rule) if x)


def _num(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value or 0)


def _score(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def explain(entries: list[dict[str, Any]]) -> list[str]:
    """The lines of ``track why``: per verdict event, every finding and the rule that decided."""
    lines: list[str] = []
    for e in entries:
        if "findings" not in e and "decided_by" not in e:
            continue
        rcpts = ", ".join(str(r) for r in e.get("recipients") or ())
        lines.append(
            f"{e.get('time', '')} {e.get('event', '')} {e.get('msg_id', '') or '-'}"
            f" from <{e.get('sender', '')}> to {rcpts or '-'}"
            + (f": {e.get('reply')}" if e.get("reply") else "")
        )
        found = [f for f in e.get("findings") or [] if isinstance(f, dict)]
        if found:
            lines.append(f"  {'STAGE':<8} {'AGENT':<20} {'FINDING':<30} {'SCORE':>6}  DETAIL")
        for f in found:
            lines.append(
                f"  {f.get('stage', '') or '-'!s:<8} {f.get('agent', '')!s:<20}"
                f" {f.get('name', '')!s:<30} {_num(f.get('score')):>6}  {f.get('detail', '')}"
            )
        # The log is read back as written, so a hand-edited or damaged line may carry anything.
        total = sum(_score(f.get("score")) for f in found)
        lines.append(f"  total {total:g}; decided by: {e.get('decided_by') or 'unknown'}")
    return [escape_controls(line) for line in lines]
