"""Prometheus ``/metrics``: the gateway processes' own counters and histograms
(``edgeward.metrics``, summed from their files), plus what a collector reads at each scrape:

- the tracking logs (gateway, delivery and administrators' files, current and rotated):
  ``edgeward_tracking_events_total{event}``, the events by kind, through the console's
  incremental reader (``logs.stats``): the first scrape reads what is on disk, later ones only
  what was written since; the count never falls when old files are pruned, and starts again
  (a reset to ``rate()``) when the console restarts;
- the quarantine folder: ``edgeward_quarantine_entries`` (metadata files only);
- the spool: ``edgeward_queue_messages{state}`` and ``edgeward_spool_free_bytes``;
- the certificate store: ``edgeward_certificate_expiry_days{thumbprint,subject}``.

A scrape costs the JSON parsing of the tracking lines written since the last one.

``/metrics`` has no login; it is answered only to clients in ``[web] metrics_allow``
(loopback by default) and 403 to everyone else.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from edgeward.logs.tracking import TrackingEvent
from edgeward.metrics import ProcessMetrics, StateCollector, metrics_dir
from edgeward.paths import data_paths
from edgeward.queue.model import QueueState
from edgeward.tls.store import CertificateStore
from edgeward.web.app import Console, console_of

__all__ = ["GatewayCollector", "router"]

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)


class GatewayCollector(Collector):
    def __init__(self, console: Console) -> None:
        self.console = console

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for part in (self._tracking, self._quarantine):
            try:
                yield from part()
            except Exception:  # one broken source must not take the others with it
                log.exception("metrics: %s could not be read", part.__name__.strip("_"))

    def _tracking(self) -> Iterator[CounterMetricFamily]:
        self.console.stats.refresh()
        counts = self.console.stats.totals()
        family = CounterMetricFamily(
            "edgeward_tracking_events",
            "Message tracking events read from the tracking logs",
            labels=["event"],
        )
        for event in TrackingEvent:
            family.add_metric([event.value], counts.get(event.value, 0))
        yield family

    def _quarantine(self) -> Iterator[GaugeMetricFamily]:
        entries = len(self.console.quarantine.store.list())
        yield GaugeMetricFamily("edgeward_quarantine_entries", "Messages held in quarantine", value=entries)


def _allowed(console: Console, host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(n, strict=False) for n in console.config.web.metrics_allow)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    console = console_of(request)
    if not _allowed(console, request.client.host if request.client else ""):
        return JSONResponse({"detail": "metrics are not served to this address"}, status_code=403)
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(GatewayCollector(console))
        # Queue depth, spool space and certificate expiry: the same gauges as the gateway's own
        # listener (edgeward.metrics.StateCollector), read at each scrape.
        store = CertificateStore(console.config.resolve(console.config.tls.store))
        registry.register(StateCollector(
            lambda: {state.value: n for state, n in console.quarantine.queue().counts().items()},
            (state.value for state in QueueState), lambda: console.quarantine.queue().free_bytes(),
            lambda: [(c.thumbprint, c.subject, c.days_until_expiry(console.now())) for c in store.list()],
        ))  # fmt: skip
        # The counters and histograms every gateway process keeps (edgeward.metrics).
        registry.register(ProcessMetrics(metrics_dir(data_paths(console.config)["state"])))
        request.app.state.registry = registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
