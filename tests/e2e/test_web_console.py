"""``edgeward web`` as a real process over HTTPS: spam held by a running gateway is found,
released from the console and delivered to a real SMTP sink, and /metrics shows it.

The client trusts the store's self-signed certificate explicitly (its own file as the only CA)
and checks the name in it (mx.example.test, sent as SNI and verified while connecting to
127.0.0.1).
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgeward.config.load import load_config
from edgeward.logs.tracking import search
from edgeward.tls.store import CertificateStore
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config, wait_port
from tests.e2e.test_quarantine_manager import SPAM, _send

pytestmark = pytest.mark.e2e
PASSWORD = "a long console password"
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _edgeward(*args: str, stdin: str = "") -> str:
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, "-m", "edgeward", *args], input=stdin.encode(), env=env,
                          capture_output=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@contextmanager
def _web(config_path: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    log = config_path.parent / "web.log"
    with log.open("ab") as fh:
        command = [
            sys.executable,
            "-m",
            "edgeward",
            "web",
            "-c",
            str(config_path),
            "--listen",
            f"127.0.0.1:{port}",
        ]
        proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": SRC}, start_new_session=True)  # fmt: skip
    try:
        try:
            wait_port(port)
        except TimeoutError:
            raise RuntimeError(log.read_text()) from None
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


class Browser:
    """httpx with the name to verify given as SNI on every request."""

    def __init__(self, port: int, ca: Path) -> None:
        context = ssl.create_default_context(cafile=str(ca))
        self.client = httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=context, timeout=30)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, extensions={"sni_hostname": "mx.example.test"}, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.post(path, extensions={"sni_hostname": "mx.example.test"}, **kw)


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def test_release_from_the_console_reaches_the_sink(workdir: Path, sink: SmtpSink) -> None:
    port, web_port = free_port(), free_port()
    content = {
        "reject_enabled": False,
        "quarantine_enabled": True,
        "quarantine_threshold": 7,
        "learning": False,
    }
    config = gateway_config(workdir, port=port, sink_port=sink.port, agents={"content_filter": content})
    path = workdir / "edgeward.toml"
    path.write_text(
        "accepted_domains = ['example.test']\n[server]\nhostname = 'mx.example.test'\n"
        f"data_dir = '{workdir}'\n[agents.content_filter]\nlearning = false\n"
    )
    _edgeward("web", "user", "add", "boss", "-c", str(path), "--role", "admin", "--password-stdin",
              stdin=PASSWORD + "\n")  # fmt: skip
    assert "boss" in _edgeward("web", "user", "list", "-c", str(path), "--json")
    with InProcessGateway(config):
        assert _send(port, SPAM, ["alice@example.test", "bob@example.test"]) == 250
        cfg = load_config(path)
        ca, _key = CertificateStore(cfg.resolve(cfg.tls.store)).binding_for("smtp")  # the default one
        with _web(path, web_port) as proc, Browser(web_port, ca) as web:
            if os.geteuid() == 0:  # started as root, it serves as the service user
                uids = Path(f"/proc/{proc.pid}/status").read_text().split("Uid:")[1].split()[:4]
                assert set(uids) == {str(pwd.getpwnam(cfg.server.user).pw_uid)}
            form = web.get("/login")
            assert form.headers["content-security-policy"].startswith("default-src 'none'")
            tls = form.extensions["network_stream"].get_extra_info("ssl_object")
            assert tls.version() in ("TLSv1.2", "TLSv1.3") and (
                "GCM" in tls.cipher()[0] or "CHACHA" in tls.cipher()[0]
            )
            r = web.post("/login", data={"name": "boss", "password": PASSWORD, "csrf": _csrf(form.text)})
            assert r.status_code == 303, r.text
            listing = web.get("/quarantine", params={"subject": "free money"})
            [qid] = re.findall(r'href="/quarantine/([0-9a-z]+)"', listing.text)
            shown = web.get(f"/quarantine/{qid}")
            assert "alice@example.test" in shown.text
            r = web.post(f"/quarantine/{qid}/release",
                         data={"csrf": _csrf(shown.text), "to": ["bob@example.test"]})  # fmt: skip
            assert r.status_code == 200 and "still held for alice@example.test" in r.text, r.text
            [message] = sink.wait_for(1)
            metrics = web.get("/metrics").text
    assert b"MAKE $5000 A WEEK" in message
    assert 'edgeward_tracking_events_total{event="QUARANTINE"} 1.0' in metrics
    assert 'edgeward_tracking_events_total{event="RELEASE"} 1.0' in metrics
    assert "edgeward_quarantine_entries 1.0" in metrics  # still held for alice
    assert "edgeward_certificate_expiry_days{" in metrics
    [release] = search(workdir / "log", event="RELEASE")
    assert release["recipients"] == ["bob@example.test"] and "boss (web console)" in release["detail"]
