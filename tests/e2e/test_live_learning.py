"""A running gateway scores with what ``edgeward spam learn`` taught, without SIGHUP or restart."""

from __future__ import annotations

import asyncio
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeward.filters.agents.content import ContentFilter
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[1] / "content" / "data"


def _send(port: int, data: bytes) -> int:
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
        c.ehlo("client.remote.test")
        c.mail("sender@remote.test")
        c.rcpt("user@example.test")
        return c.data(data)[0]


def _probability(message: bytes) -> float:
    for line in message.split(b"\n"):
        if line.startswith(b"X-Edgeward-Antispam-Report:"):
            fields = dict(f.split(b":", 1) for f in line.split(b":", 1)[1].strip().split(b";"))
            return float(fields[b"P"])
    raise AssertionError("no anti-spam report header")


async def _score_in_workers(gateway: InProcessGateway) -> None:
    """Make the receiving process look saturated, so its scoring moves to a worker, and wait
    until one is ready."""
    assert gateway.gateway is not None and gateway.gateway.receiving is not None
    receiving = gateway.gateway.receiving
    workers = receiving.scoring_workers
    workers.configure(1, start_load=0.0, idle_stop=600.0, timeout=30.0, memory_limit=1024**3)
    workers._cpu_clock = time.monotonic  # CPU time as fast as the wall clock: saturated
    workers.min_size = 0  # the test's message is smaller than a worker takes in production
    [agent] = [a for a in receiving.env[0].policy.pipeline.agents if isinstance(a, ContentFilter)]
    deadline = time.monotonic() + 30
    while workers.take(agent.classifier, 1024**2) is None:
        assert time.monotonic() < deadline, "no scoring worker became ready"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("scoring", ["in-process", "workers"])
def test_spam_learn_in_another_process_reaches_the_running_gateway(
    workdir: Path, sink: SmtpSink, scoring: str
) -> None:
    port = free_port()
    config = gateway_config(
        workdir, port=port, sink_port=sink.port, agents={"content_filter": {"refresh_interval": 0}}
    )
    # The same data folder for the command line, as an administrator's edgeward.toml would give.
    config_path = workdir / "edgeward.toml"
    config_path.write_text(f"accepted_domains = ['example.test']\n[server]\ndata_dir = '{workdir}'\n")
    ham = (DATA / "ham.eml").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    # Between ham and spam for the shipped model, so one lesson moves it visibly.
    ham = ham.replace(b"Thanks,", b"Order our new service today, special offer for you.\r\nThanks,")
    sample = workdir / "reported.eml"
    sample.write_bytes(ham)
    with InProcessGateway(config) as gateway:
        if scoring == "workers":
            gateway.call(_score_in_workers(gateway))
        assert _send(port, ham) == 250
        [first] = sink.wait_for(1)
        command = ["spam", "learn", "--spam", str(sample), "-c", str(config_path)]
        learned = subprocess.run(
            [sys.executable, "-m", "edgeward", *command], capture_output=True, text=True, check=False
        )
        assert learned.returncode == 0, learned.stderr
        assert "live model version 1" in learned.stdout
        assert _send(port, ham) == 250
        second = next(m for m in sink.wait_for(2) if m != first)
        assert gateway.gateway is not None and gateway.gateway.receiving is not None
        workers = gateway.gateway.receiving.scoring_workers
        if scoring == "workers":
            # That message brought the new model into the gateway and was scored there, while
            # the worker was sent the new model; the next is the worker's again.
            gateway.call(_score_in_workers(gateway))
            assert _send(port, ham) == 250
            third = next(m for m in sink.wait_for(3) if m not in (first, second))
            assert _probability(third) == _probability(second)
        assert workers.scored == (2 if scoring == "workers" else 0)
        processes = [w.process for w in workers._workers]
        assert len(processes) == (1 if scoring == "workers" else 0)
    assert _probability(second) > _probability(first) + 0.01
    assert all(p.poll() is not None for p in processes), "the gateway's stop ends its workers"
