"""What the gateway counts for Prometheus, in every process, and how one endpoint exports it.

Design: prometheus-client's multiprocess mode. Each gateway process (the receiving process,
the delivery process, and any further worker a listener forks) writes its counters and
histograms to memory-mapped files of its own, ``<type>_<pid>.db`` in one folder
(``state/metrics``, see ``metrics_dir``); an exporter merges the files of every process at scrape
time (``ProcessMetrics``). This was chosen over a pipe to one aggregating process because:

- an increment stays a local memory write (about a microsecond, no system call, no lock shared
  with another process), so counting costs nothing measurable per message;
- any number of processes count correctly without knowing of each other, and counters of a
  process that died (a restarted delivery process) stay in the sum, so a restart is no reset;
- whoever exports needs only read access to the folder: the receiving process's own listener
  (``[metrics] listen``) and ``edgeward web`` are both just readers.

``serve`` empties the folder at start (``reset``) before any process counts, so a restart of
the service starts every counter at zero, which Prometheus's ``rate()`` reads as a reset.
``enable`` must run before the first sample of a labelled family is touched in a process (it
also drops any touched before, which then lived in memory only); every family here has a
label, so no value exists before that. Processes started by ``serve`` inherit
``PROMETHEUS_MULTIPROC_DIR`` and call ``enable`` again.

Only counters and histograms live in the files. Gauges about the gateway's state (queue depth
by state, spool free space, certificate expiry) are read at scrape time by the exporter
(``StateCollector`` here, ``web.metrics`` in the console), so there is no per-process gauge to
merge and none goes stale when a process dies.

Cardinality is bounded: agent, finding and event names come from fixed sets (anything else is
``other``), next hops are connector names or MX domains capped at ``MAX_NEXT_HOPS`` distinct,
engines at ``MAX_ENGINES``; no address or IP is ever a label.

This package holds definitions only, no HTTP: ``server.metrics_http`` serves the receiving
process's listener, ``web.metrics`` the console's ``/metrics``.
"""

from __future__ import annotations

from edgeward.metrics.families import (
    AGENT_VERDICTS,
    CLASSIFIER_SECONDS,
    CONNECTIONS,
    DELIVERY_RESULTS,
    DELIVERY_SECONDS,
    FAMILIES,
    MAX_ENGINES,
    MAX_NEXT_HOPS,
    MESSAGES,
    REGISTRY,
    SCAN_SECONDS,
    BoundedLabel,
    agent_label,
    count_agent_outcome,
    count_connection,
    count_delivery,
    count_message,
    finding_label,
    next_hop_label,
    observe_classifier,
    observe_scan,
)
from edgeward.metrics.process import (
    ENV,
    STATE_FAMILIES,
    ProcessMetrics,
    StateCollector,
    counted,
    enable,
    enabled_dir,
    metrics_dir,
    reset,
)

__all__ = [
    "AGENT_VERDICTS",
    "CLASSIFIER_SECONDS",
    "CONNECTIONS",
    "DELIVERY_RESULTS",
    "DELIVERY_SECONDS",
    "ENV",
    "FAMILIES",
    "MAX_ENGINES",
    "MAX_NEXT_HOPS",
    "MESSAGES",
    "REGISTRY",
    "SCAN_SECONDS",
    "STATE_FAMILIES",
    "BoundedLabel",
    "ProcessMetrics",
    "StateCollector",
    "agent_label",
    "count_agent_outcome",
    "count_connection",
    "count_delivery",
    "count_message",
    "counted",
    "enable",
    "enabled_dir",
    "finding_label",
    "metrics_dir",
    "next_hop_label",
    "observe_classifier",
    "observe_scan",
    "reset",
]
