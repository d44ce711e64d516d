"""What the dashboard shows for a window: the tracking figures of ``logs.stats`` joined with
the queue depth (the spool's count per state) and certificate expiry (the store), which are
states read at the call rather than events folded from the logs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgeward.logs.stats import WINDOWS, Snapshot, TrackingStats
from edgeward.queue.model import QueueState
from edgeward.queue.spool import Spool
from edgeward.tls.store import CertificateStore

__all__ = ["CertExpiry", "Dashboard", "dashboard"]


@dataclass(frozen=True, slots=True)
class CertExpiry:
    thumbprint: str
    subject: str
    services: tuple[str, ...]
    not_after: float
    days_left: float


@dataclass(frozen=True, slots=True)
class Dashboard:
    """A window's tracking figures with the queue and certificates as they are now."""

    stats: Snapshot
    queue: dict[str, int]  # messages per queue state
    certificates: list[CertExpiry]  # soonest to expire first

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self.stats)
        for name in ("rejected_by_agent", "rejected_by_finding", "top_ips", "top_domains"):
            out[name] = [{"name": k, "count": n} for k, n in out[name]]
        out["av"] = [{"finding": f, "signature": s, "count": n} for f, s, n in out["av"]]
        out["queue"] = self.queue
        out["certificates"] = [asdict(c) for c in self.certificates]
        return out


def queue_depth(spool: Spool) -> dict[str, int]:
    counts = spool.counts()
    return {state.value: counts.get(state, 0) for state in QueueState}


def certificate_expiry(store: CertificateStore, now: float) -> list[CertExpiry]:
    return [
        CertExpiry(c.thumbprint, c.subject, tuple(str(b) for b in c.bindings), c.not_after.timestamp(),
                   round(c.days_until_expiry(now), 2))
        for c in store.list()
    ]  # fmt: skip


def dashboard(
    stats: TrackingStats, spool: Spool, store: CertificateStore, window: str, now: float
) -> Dashboard:
    """Refresh ``stats`` and answer ``window`` (``ValueError`` for a window that is none)."""
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}; one of {', '.join(WINDOWS)}")
    stats.refresh()
    return Dashboard(stats.snapshot(window), queue_depth(spool), certificate_expiry(store, now))
