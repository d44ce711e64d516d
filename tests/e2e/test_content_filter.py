"""The content filter agent in a running gateway: stamps, thresholds, words, bypass, quarantine, learning."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgeward.config.schema import Config
from edgeward.runtime_policy import build_classifier
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[1] / "content" / "data"


def _message(name: str) -> bytes:
    return (DATA / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _config(workdir: Path, port: int, sink: SmtpSink, **content: Any) -> Config:
    return gateway_config(workdir, port=port, sink_port=sink.port, agents={"content_filter": content})


def _send(port: int, data: bytes, source: str = "127.0.0.2") -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30) as c:
        c.ehlo("client.remote.test")
        c.mail("sender@remote.test")
        c.rcpt("user@example.test")
        return c.data(data)


def _header(message: bytes, name: bytes) -> bytes:
    for line in message.split(b"\n"):
        if line.lower().startswith(name.lower() + b":"):
            return line.split(b":", 1)[1].strip()
    return b""


def test_gtube_is_rejected_with_the_configured_text(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink)):
        code, text = _send(port, _message("gtube.eml"))
    assert (code, text) == (550, b"5.7.1 Message rejected as spam by Content Filtering")
    assert sink.messages() == []


def test_ham_is_delivered_with_our_stamps_and_forged_stamps_removed(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    forged = b"X-Edgeward-SCL: -1\r\nX-Edgeward-Antispam-Report: forged\r\n" + _message("ham.eml")
    with InProcessGateway(_config(workdir, port, sink)):
        assert _send(port, forged)[0] == 250
        [message] = sink.wait_for(1)
    scl = int(_header(message, b"X-Edgeward-SCL"))
    assert 0 <= scl < 7
    assert message.count(b"X-Edgeward-SCL:") == 1
    assert b"forged" not in message
    assert _header(message, b"X-Edgeward-Antispam-Report").startswith(f"SCL:{scl};PCL:".encode())


def test_custom_bad_word_gives_scl_9_and_good_word_scl_0(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    ham = _message("ham.eml")
    config = _config(workdir, port, sink, bad_words=["quarterly figures"], good_words=["project falcon"])
    with InProcessGateway(config):
        bad = ham.replace(b"\r\n\r\n", b"\r\n\r\nThe quarterly figures are attached.\r\n", 1)
        assert _send(port, bad)[0] == 550
        good = _message("spam.eml").replace(b"<p>Dear Friend,</p>", b"<p>Project Falcon update</p>")
        assert _send(port, good)[0] == 250
        [message] = sink.wait_for(1)
    assert _header(message, b"X-Edgeward-SCL") == b"0"


def test_delete_threshold_drops_the_message_silently(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, delete_enabled=True, delete_threshold=9)):
        code, text = _send(port, _message("gtube.eml"))
        assert code == 250 and b"queued as" in text
        assert _send(port, _message("ham.eml"))[0] == 250
        sink.wait_for(1)
    assert all(b"GTUBE" not in m for m in sink.messages())


def test_trusted_sessions_are_not_scored(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = gateway_config(
        workdir, port=port, sink_port=sink.port,
        relay={"permissions": ["submit", "relay", "bypass_antispam"]},
    )  # fmt: skip
    with InProcessGateway(config):
        assert _send(port, _message("gtube.eml"), source="127.0.0.1")[0] == 250
        [message] = sink.wait_for(1)
    assert _header(message, b"X-Edgeward-SCL") == b"-1"


def test_quarantine_then_release_delivers_and_learns(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = _config(
        workdir, port, sink, reject_enabled=False, quarantine_enabled=True, quarantine_threshold=7
    )
    config_path = workdir / "edgeward.toml"
    config_path.write_text(
        "accepted_domains = ['example.test']\n[server]\nhostname = 'mx.example.test'\ndata_dir = '.'\n"
        "[[send_connectors]]\nname = 'inbound'\naddress_spaces = ['*']\n"
        f"smart_hosts = ['127.0.0.1:{sink.port}']\n"
        "[agents.content_filter]\nreject_enabled = false\nquarantine_enabled = true\n"
        "quarantine_threshold = 7\n"
    )
    spam = _message("spam.eml")
    before = build_classifier(config).score(spam).probability
    with InProcessGateway(config):
        assert _send(port, spam)[0] == 250
        cli = [sys.executable, "-m", "edgeward", "quarantine"]
        listing = subprocess.run(
            [*cli, "list", "--json", "-c", str(config_path)], capture_output=True, text=True, check=True
        )
        [entry] = json.loads(listing.stdout)
        assert entry["scl"] >= 7 and entry["recipients"] == ["user@example.test"]
        assert sink.messages() == []
        released = subprocess.run(
            [*cli, "release", entry["qid"], "-c", str(config_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert released.returncode == 0, released.stderr
        [message] = sink.wait_for(1, timeout=60)
    assert b"MAKE $5000 A WEEK" in message
    after = build_classifier(config).score(spam).probability
    assert after < before  # released as not spam: the live model moved towards ham


def test_reporting_spam_raises_the_score(workdir: Path) -> None:
    config_path = workdir / "edgeward.toml"
    config_path.write_text("accepted_domains = ['example.test']\n[server]\ndata_dir = '.'\n")
    from edgeward.config.load import load_config

    config = load_config(config_path)
    ham = _message("ham.eml")
    before = build_classifier(config).score(ham).probability
    sample = workdir / "reported.eml"
    sample.write_bytes(ham)
    command = ["spam", "learn", "--spam", str(sample), "--config", str(config_path)]
    out = subprocess.run(
        [sys.executable, "-m", "edgeward", *command], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert build_classifier(config).score(ham).probability > before
