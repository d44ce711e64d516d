"""A running gateway scores with what ``edgeward spam learn`` taught, without SIGHUP or restart."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_spam_learn_in_another_process_reaches_the_running_gateway(workdir: Path, sink: SmtpSink) -> None:
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
    with InProcessGateway(config):
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
    assert _probability(second) > _probability(first) + 0.01
