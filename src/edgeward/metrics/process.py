"""Multiprocess mode: the folder, switching a process to it, and the collectors that export.

See the package docstring for the design. ``ProcessMetrics`` merges the files of every process
that counted; ``StateCollector`` reads the gateway's state at scrape time through the callables
it is given (the spool's counts, its free space, the certificate store), so this module needs
nothing above it.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from prometheus_client import values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from edgeward.metrics.families import FAMILIES, REGISTRY

log = logging.getLogger("edgeward.metrics")

ENV = "PROMETHEUS_MULTIPROC_DIR"
FOLDER = "metrics"
# The gauges read at scrape time, by name (the console's collector exports the same names).
STATE_FAMILIES = ("edgeward_queue_messages", "edgeward_spool_free_bytes", "edgeward_certificate_expiry_days")


def metrics_dir(state_dir: Path) -> Path:
    """Where the processes of the gateway whose state folder is ``state_dir`` count."""
    return state_dir / FOLDER


def reset(path: Path) -> None:
    """Empty (or make) the folder: at ``serve`` start, before any process of it counts."""
    if path.is_dir():
        shutil.rmtree(path)
    path.mkdir(parents=True, mode=0o700)


def enable(path: Path) -> None:
    """Count this process's samples in ``path`` (and its children's: they inherit ``ENV``)."""
    if getattr(values.ValueClass, "_multiprocess", False) and os.environ.get(ENV) == str(path):
        return  # already (e.g. the variable was inherited, so the import chose the files)
    for family in FAMILIES:
        # A sample touched before this lives in memory, not in the files: start it again.
        # (Before the variable is set: prometheus-client warns of clearing in multiprocess mode.)
        family.clear()
    os.environ[ENV] = str(path)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def enabled_dir() -> Path | None:
    """The folder this process counts in, or ``None`` when it counts in memory only."""
    if not getattr(values.ValueClass, "_multiprocess", False):
        return None
    folder = os.environ.get(ENV)
    return Path(folder) if folder else None


class ProcessMetrics(Collector):
    """The counters and histograms of every process that counted in ``path``, summed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterable[Metric]:
        if not self.path.is_dir():  # the gateway has not run yet: nothing counted
            return []
        files = glob.glob(os.path.join(self.path, "*.db"))
        merged: Iterable[Metric] = MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        return merged


class _InMemory(Collector):
    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def counted() -> Collector:
    """This gateway's counters: every process's files when counting in them, else this process's."""
    folder = enabled_dir()
    return ProcessMetrics(folder) if folder is not None else _InMemory()


Certificates = Callable[[], Iterable[tuple[str, str, float]]]  # (thumbprint, subject, days left)


class StateCollector(Collector):
    """Queue depth by state, spool free space and certificate expiry, read at each scrape."""

    def __init__(
        self,
        queue_counts: Callable[[], Mapping[str, int]],
        states: Iterable[str],
        free_bytes: Callable[[], int],
        certificates: Certificates,
    ) -> None:
        self._queue_counts = queue_counts
        self._states = tuple(states)
        self._free_bytes = free_bytes
        self._certificates = certificates

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for part in (self._queue, self._free, self._expiry):
            try:
                yield from part()
            except Exception:  # one unreadable source must not take the others with it
                log.exception("metrics: %s could not be read", part.__name__.strip("_"))

    def _queue(self) -> Iterator[GaugeMetricFamily]:
        counts = self._queue_counts()
        family = GaugeMetricFamily(
            "edgeward_queue_messages", "Messages in the queue by state", labels=["state"]
        )
        for state in self._states:
            family.add_metric([state], counts.get(state, 0))
        yield family

    def _free(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "edgeward_spool_free_bytes", "Free space where the spool is", value=self._free_bytes()
        )

    def _expiry(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "edgeward_certificate_expiry_days", "Days until a stored certificate expires",
            labels=["thumbprint", "subject"],
        )  # fmt: skip
        for thumbprint, subject, days in self._certificates():
            family.add_metric([thumbprint, subject], days)
        yield family
