"""The metric families the gateway counts, and the one function per place that counts.

Call sites use the ``count_*``/``observe_*`` functions rather than the families, so the label
rules (bounded sets, ``other``) live here once. Every family has a label: see ``enable`` in
``metrics.process`` for why that matters in multiprocess mode.
"""

from __future__ import annotations

import functools
import threading

from prometheus_client import CollectorRegistry, Counter, Histogram

MAX_NEXT_HOPS = 50  # distinct MX domains per process before "other"
MAX_ENGINES = 16
OTHER = "other"

# Not prometheus_client's global registry: that one also carries the process and platform
# collectors, which mean nothing summed over processes.
REGISTRY = CollectorRegistry(auto_describe=True)

CONNECTIONS = Counter(
    "edgeward_connections",
    "Connections by receive connector and result (accepted, or why refused or ended)",
    ["connector", "result"],
    registry=REGISTRY,
)
MESSAGES = Counter(
    "edgeward_messages",
    "Message events by kind, one per tracking log event (received, delivered, rejected, quarantined, "
    "deferred, bounced, ...)",
    ["event"],
    registry=REGISTRY,
)
AGENT_VERDICTS = Counter(
    "edgeward_agent_verdicts",
    "Agent outcomes with a finding or a final action, by agent, action and finding",
    ["agent", "action", "finding"],
    registry=REGISTRY,
)
DELIVERY_RESULTS = Counter(
    "edgeward_delivery_results",
    "Recipients' delivery results by next hop (delivered, deferred, failed)",
    ["next_hop", "result"],
    registry=REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "edgeward_delivery_seconds",
    "Time of one delivery attempt to a next hop (connection, TLS and transaction)",
    ["next_hop"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
    registry=REGISTRY,
)
CLASSIFIER_SECONDS = Histogram(
    "edgeward_classifier_seconds",
    "Time the content classifier took to rate a message (inline, in a thread, or in a worker process)",
    ["path"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
SCAN_SECONDS = Histogram(
    "edgeward_scan_seconds",
    "Time one scan engine took for one message, answered or not",
    ["engine"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)

FAMILIES = (
    CONNECTIONS, MESSAGES, AGENT_VERDICTS, DELIVERY_RESULTS, DELIVERY_SECONDS, CLASSIFIER_SECONDS,
    SCAN_SECONDS,
)  # fmt: skip

# Tracking events by the names a dashboard asks for; the rest keep their own name.
_EVENT_NAMES = {
    "RECEIVE": "received", "SEND": "delivered", "DELIVER": "delivered", "REJECT": "rejected",
    "QUARANTINE": "quarantined", "DEFER": "deferred", "FAIL": "bounced", "DISCARD": "discarded",
    "EXPIRE": "expired", "DSN": "dsn", "HOLD": "held", "RELEASE": "released", "REMOVE": "removed",
    "POISON": "poisoned", "CORRUPT": "corrupt",
}  # fmt: skip


class BoundedLabel:
    """Label values as given until ``limit`` distinct ones were seen, then ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) >= self.limit:
                return OTHER
            self._seen.add(value)
        return value


_mx_domains = BoundedLabel(MAX_NEXT_HOPS)
_engines = BoundedLabel(MAX_ENGINES)


@functools.cache
def _agents() -> frozenset[str]:
    # Late: the schema imports far more than this bottom-layer module should at import time.
    from edgeward.config.schema import AGENT_NAMES

    return frozenset(AGENT_NAMES)


@functools.cache
def _findings() -> frozenset[str]:
    from edgeward.config.scores import SCORE_TABLE

    return frozenset(SCORE_TABLE)


def agent_label(name: str) -> str:
    return name if name in _agents() else OTHER


def finding_label(name: str) -> str:
    return name if name in _findings() else OTHER


def next_hop_label(connector: str, kind: str, domain: str) -> str:
    """A smart host or drop route is its connector; a DNS route its domain, capped."""
    return _mx_domains(domain) if kind == "dns" else connector


def count_connection(connector: str, result: str) -> None:
    CONNECTIONS.labels(connector, result).inc()


def count_message(event: str) -> None:
    MESSAGES.labels(_EVENT_NAMES.get(event, OTHER)).inc()


def count_agent_outcome(agent: str, action: str, findings: tuple[str, ...]) -> None:
    """One sample per finding (``none`` when a final action came without one)."""
    label = agent_label(agent)
    for finding in findings or ("none",):
        AGENT_VERDICTS.labels(label, action, finding_label(finding) if finding != "none" else finding).inc()


def count_delivery(next_hop: str, result: str, recipients: int = 1) -> None:
    DELIVERY_RESULTS.labels(next_hop, result).inc(recipients)


def observe_classifier(seconds: float, path: str) -> None:
    CLASSIFIER_SECONDS.labels(path).observe(seconds)


def observe_scan(engine: str, seconds: float) -> None:
    SCAN_SECONDS.labels(_engines(engine)).observe(seconds)
