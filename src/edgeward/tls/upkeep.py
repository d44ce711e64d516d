"""Certificate upkeep while the gateway runs: renewal, expiry warnings, an expiry metric.

Self-signed certificates are renewed automatically 30 days before they expire (Exchange lets
its self-signed certificate lapse; we do not). CA-issued certificates cannot be renewed without
the CA, so they are warned about in the log for the last 30 days, and every certificate's
remaining lifetime is written as a metric in the Prometheus text format
(``edgeward_certificate_expiry_seconds``), for node_exporter's textfile collector or any scraper.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from edgeward.tls.store import CertificateStore, RenewalReport

log = logging.getLogger("edgeward.tls")

WARN_DAYS = 30


def check_certificates(store: CertificateStore, metrics_file: Path | None = None) -> RenewalReport:
    """Renew what is due, log warnings, write the metric; return what was done."""
    report = store.renew_due(WARN_DAYS)
    for old, new in report.renewed:
        log.warning("self-signed certificate %s renewed as %s", old[:16], new[:16])
    for warning in report.warnings:
        log.warning("%s", warning)
    if metrics_file is not None:
        write_expiry_metric(store, metrics_file)
    return report


def write_expiry_metric(store: CertificateStore, path: Path) -> None:
    now = datetime.now(UTC)
    lines = [
        "# HELP edgeward_certificate_expiry_seconds Seconds until the certificate expires ",
        "# TYPE edgeward_certificate_expiry_seconds gauge",
    ]
    for info in store.list():
        bound = "1" if info.bindings else "0"
        subject = info.subject.replace("\\", "\\\\").replace('"', '\\"')
        seconds = int((info.not_after - now).total_seconds())
        lines.append(
            f'edgeward_certificate_expiry_seconds{{thumbprint="{info.thumbprint[:16]}",'
            f'subject="{subject}",bound="{bound}"}} {seconds}'
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
