"""What a quarantine entry records, and how one is made from a verdict.

Every path that holds a message back (the policy's quarantine decision, whichever agent or
threshold made it, and the attachment filter keeping the original of a stripped message)
builds its entry with :func:`held_entry`, so each records the same things: the reason, every
finding with its agent, detail and score, the SCL and PCL, what each scan engine said, the
recipients, the size and the subject.

Compatibility: ``findings`` stays the tuple of finding names older entries hold; the richer
``details`` and ``engines`` are new fields with empty defaults, so a metadata file written
before them still loads (:func:`entry_from_dict`), and one written now still reads as the old
shape to code that knows only the names.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from edgeward.filters.verdict import Verdict, phishing_level
from edgeward.headers import sanitize
from edgeward.types import Finding

__all__ = ["EngineResult", "HeldFinding", "QuarantineEntry", "entry_from_dict", "held_entry"]

QID = re.compile(r"^[0-9a-z]{8,40}$")
# The antivirus agent's detail: "engine=clamd signature=Eicar-Test-Signature path=1/eicar.com".
_ENGINE_DETAIL = re.compile(r"^engine=(\S+)(?: signature=(.*?))?(?: path=(.*))?$")


@dataclass(frozen=True, slots=True)
class HeldFinding:
    name: str
    agent: str = ""
    detail: str = ""
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class EngineResult:
    """One scan engine's word on one item: ``clamd`` found ``Eicar-Test-Signature`` in ``1/x``."""

    engine: str
    finding: str
    signature: str = ""
    part: str = ""


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    qid: str
    mail_from: str
    recipients: tuple[str, ...]
    reason: str  # which agent quarantined it, e.g. "content-filter"
    scl: int = -1
    findings: tuple[str, ...] = ()
    subject: str = ""
    client_ip: str = ""
    size: int = 0
    quarantined_at: float = field(default_factory=time.time)
    # The queue record the message would have had (queue.model's JSON form), so a release
    # re-queues it with its Message-ID, client, connector and DSN parameters intact.
    queue_record: dict[str, Any] | None = None
    pcl: int = -1
    total: float = 0.0
    decided_by: str = ""
    details: tuple[HeldFinding, ...] = ()
    engines: tuple[EngineResult, ...] = ()
    message_id: str = ""


def engine_results(findings: Iterable[Finding]) -> tuple[EngineResult, ...]:
    """The scan engines' answers among ``findings`` (those whose detail names an engine)."""
    out: list[EngineResult] = []
    for f in findings:
        m = _ENGINE_DETAIL.match(f.detail)
        if m:
            out.append(EngineResult(m.group(1), f.name, m.group(2) or "", m.group(3) or ""))
    return tuple(out)


def held_entry(
    verdict: Verdict,
    *,
    mail_from: str,
    recipients: Iterable[str],
    subject: str,
    message_id: str,
    client_ip: str,
    queue_record: dict[str, Any] | None,
    reason: str | None = None,
) -> QuarantineEntry:
    """The entry for a message ``verdict`` holds back (``reason`` defaults to who decided)."""
    scl = next((v for n, v in verdict.headers if n == "X-Edgeward-SCL"), "-1")
    findings = verdict.findings
    return QuarantineEntry(
        qid="",
        mail_from=mail_from,
        recipients=tuple(recipients),
        reason=reason if reason is not None else verdict.decided_by.removeprefix("agent "),
        scl=int(scl) if scl.lstrip("-").isdigit() else -1,
        findings=tuple(dict.fromkeys(f.name for f in findings)),
        subject=sanitize(subject, 200),
        client_ip=client_ip,
        queue_record=queue_record,
        pcl=phishing_level(findings) if any(f.name.startswith("PCL_") for f in findings) else -1,
        total=verdict.total,
        decided_by=sanitize(verdict.decided_by, 200),
        details=tuple(HeldFinding(f.name, f.agent, sanitize(f.detail, 500), f.score) for f in findings[:200]),
        engines=engine_results(findings),
        message_id=sanitize(message_id.strip(), 500),
    )


def entry_from_dict(meta: dict[str, Any]) -> QuarantineEntry:
    """An entry from its JSON form, old or new; ``ValueError``/``TypeError`` if it is none."""
    known = set(QuarantineEntry.__dataclass_fields__)
    values = {k: v for k, v in meta.items() if k in known}
    for key in ("recipients", "findings"):
        values[key] = tuple(str(v) for v in values.get(key) or ())
    values["details"] = tuple(HeldFinding(**d) for d in values.get("details") or ())
    values["engines"] = tuple(EngineResult(**d) for d in values.get("engines") or ())
    entry = QuarantineEntry(**values)
    if not QID.match(str(entry.qid)) or not isinstance(entry.quarantined_at, (int, float)):
        raise ValueError("not a quarantine entry")
    return entry
