"""Prometheus counters of a real ``edgeward serve`` (receiving and delivery processes) after a
known load, scraped from its own ``[metrics] listen``.

The load: clean messages delivered to smtp-sink, messages refused at RCPT by relay control (a
hard control), one quarantined by the From field check, one deferred by a next hop where
nothing listens. Every count is exact: received and refused are counted by the receiving
process, delivered and deferred by the delivery process, and the scrape sums both.
"""

from __future__ import annotations

import smtplib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import NO_OUTSIDE_DNS, GatewayProcess, SmtpSink, free_port

pytestmark = pytest.mark.e2e

CLEAN, REFUSED = 5, 3
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _config(workdir: Path, port: int, sink: SmtpSink, metrics_port: int, dead_port: int) -> Path:
    args = [
        "init", "--dir", str(workdir / "gw"), "--hostname", "mx.example.test",
        "--listen", f"127.0.0.1:{port}", "--accept-domain", "example.test",
        "--relay-from", "127.0.0.1/32", "--smart-host", f"127.0.0.1:{sink.port}",
    ]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "edgeward", *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    (workdir / "gw").chmod(0o755)
    config = workdir / "gw" / "edgeward.toml"
    refusing = (
        f'[[send_connectors]]\nname = "refusing"\naddress_spaces = ["refusing.test"]\n'
        f'smart_hosts = ["127.0.0.1:{dead_port}"]\n\n'
    )
    # No retry within the test: the one deferral is one attempt.
    text = config.read_text().replace("[queue]\n", f"{refusing}[queue]\nglitch_retry_interval = 600\n")
    text += NO_OUTSIDE_DNS
    text += f'\n[agents]\nfrom_header = "quarantine"\n\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
    config.write_text(text)
    return config


def _send(port: int, rcpt: str, body: str, *, source: str = "127.0.0.2") -> tuple[int, int]:
    """(RCPT code, DATA code or 0 when RCPT was refused)."""
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30) as c:
        c.ehlo("load.remote.test")
        c.mail("a@remote.test")
        code, _ = c.rcpt(rcpt)
        if code != 250:
            return code, 0
        data_code, _ = c.data(body)
        return code, data_code


def _message(n: int, *, with_from: bool = True) -> str:
    sender = "From: a@remote.test\r\n" if with_from else ""
    return f"{sender}Subject: load {n}\r\nMessage-ID: <load-{n}@remote.test>\r\n\r\nmessage {n}\r\n"


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and want <= got)


def test_a_known_load_is_counted_exactly_by_both_processes(workdir: Path, sink: SmtpSink) -> None:
    port, metrics_port, dead_port = free_port(), free_port(), free_port()
    config = _config(workdir, port, sink, metrics_port, dead_port)
    gw = GatewayProcess(config, port).start()  # its banner check is one connection from 127.0.0.1
    try:
        for n in range(CLEAN):
            assert _send(port, "b@example.test", _message(n)) == (250, 250)
        for _ in range(REFUSED):
            assert _send(port, "x@elsewhere.test", _message(99))[0] == 550
        assert _send(port, "b@example.test", _message(100, with_from=False)) == (250, 250)
        assert _send(port, "x@refusing.test", _message(101), source="127.0.0.1") == (250, 250)
        sink.wait_for(CLEAN)

        deadline = time.monotonic() + 60
        samples: Samples = {}
        while time.monotonic() < deadline:
            try:
                samples = _scrape(metrics_port)
            except (urllib.error.URLError, ConnectionError):
                samples = {}
            done = _get(samples, "edgeward_messages_total", event="delivered") == CLEAN
            if done and _get(samples, "edgeward_messages_total", event="deferred") == 1:
                break
            time.sleep(0.2)

        # Two processes counted, each in a file of its own.
        files = list((workdir / "gw" / "state" / "metrics").glob("counter_*.db"))
        assert len(files) == 2, files

        assert (
            _get(samples, "edgeward_connections_total", connector="internet", result="accepted")
            == CLEAN + REFUSED + 1
        )
        assert _get(samples, "edgeward_connections_total", connector="relay", result="accepted") == 2
        assert _total(samples, "edgeward_connections_total") == CLEAN + REFUSED + 3

        messages = {e: _get(samples, "edgeward_messages_total", event=e) for e in
                    ("received", "delivered", "rejected", "quarantined", "deferred", "bounced")}  # fmt: skip
        assert messages == {
            "received": CLEAN + 1, "delivered": CLEAN, "rejected": REFUSED, "quarantined": 1, "deferred": 1,
            "bounced": 0,
        }  # fmt: skip

        verdict = "edgeward_agent_verdicts_total"
        assert (
            _get(samples, verdict, agent="relay-control", action="reject", finding="RCPT_RELAY_DENIED")
            == REFUSED
        )
        assert _get(samples, verdict, agent="from-header", action="quarantine", finding="FROM_MISSING") == 1
        # The classifier rated every message that reached it: the clean ones and the deferred one.
        scored = _total(samples, verdict, agent="content-filter", action="continue")
        assert scored == 2 * (CLEAN + 1)  # an SCL and a PCL finding each
        assert _get(samples, "edgeward_classifier_seconds_count", path="inline") == CLEAN + 1

        assert (
            _get(samples, "edgeward_delivery_results_total", next_hop="inbound", result="delivered") == CLEAN
        )
        assert _get(samples, "edgeward_delivery_results_total", next_hop="refusing", result="deferred") == 1
        assert _total(samples, "edgeward_delivery_results_total") == CLEAN + 1
        assert _get(samples, "edgeward_delivery_seconds_count", next_hop="inbound") == CLEAN
        assert _get(samples, "edgeward_delivery_seconds_count", next_hop="refusing") == 1
        assert _get(samples, "edgeward_delivery_seconds_bucket", next_hop="inbound", le="+Inf") == CLEAN

        # Read at scrape time: the deferred message waits in the queue.
        assert _get(samples, "edgeward_queue_messages", state="deferred") == 1
        assert _get(samples, "edgeward_queue_messages", state="incoming") == 0
        assert _get(samples, "edgeward_spool_free_bytes") > 0
        expiry = [v for (n, _), v in samples.items() if n == "edgeward_certificate_expiry_days"]
        assert expiry and all(v > 300 for v in expiry)  # the self-signed certificate serve made
    finally:
        gw.stop()
