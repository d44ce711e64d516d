"""``edgeward serve`` with ``[web] enabled = true``: the console answers HTTPS on its port as a
child of ``serve``, is started again when it dies, and SIGTERM stops it with everything else;
with one gateway process as with the delivery process beside it. SIGHUP passed on makes it
serve a newly bound certificate."""

from __future__ import annotations

import os
import pwd
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from edgeward.config.load import load_config
from edgeward.tls.store import CertificateStore
from tests.e2e.harness import GatewayProcess, free_port, wait_port
from tests.e2e.test_serve import _init

pytestmark = pytest.mark.e2e


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except FileNotFoundError:
        return []


def _console_child(gateway: GatewayProcess, other_than: int = 0, timeout: float = 30.0) -> int:
    """The pid of serve's `edgeward web` child (a new one when ``other_than`` is the old)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in gateway.children(timeout=1):
            if "--socket-fd" in _cmdline(pid) and pid != other_than:
                return pid
        time.sleep(0.1)
    raise AssertionError(f"no console child:\n{gateway.log.read_text()[-3000:]}")


def _get(port: int, ca: Path) -> httpx.Response:
    context = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=context, timeout=30) as client:
        return client.get("/login", extensions={"sni_hostname": "mx.example.test"})


def _wait_answer(port: int, ca: Path, timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _get(port, ca)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.parametrize("delivery_process", [True, False])
def test_serve_supervises_the_console(workdir: Path, delivery_process: bool) -> None:
    port, web_port = free_port(), free_port()
    config = _init(workdir, port, None)
    split = f"[server]\ndelivery_process = {str(delivery_process).lower()}\n"
    web = f"\n[web]\nenabled = true\nlisten = '127.0.0.1:{web_port}'\n"
    config.write_text(config.read_text().replace("[server]\n", split) + web)
    cfg = load_config(config)
    gateway = GatewayProcess(config, port).start()
    try:
        wait_port(web_port)
        ca, _key = CertificateStore(cfg.resolve(cfg.tls.store)).binding_for("smtp")  # the default one
        page = _wait_answer(web_port, ca)
        assert page.status_code == 200 and 'name="password"' in page.text
        first = _console_child(gateway)
        if os.geteuid() == 0:  # the socket was bound as root; the console never ran as root
            uids = Path(f"/proc/{first}/status").read_text().split("Uid:")[1].split()[:4]
            assert set(uids) == {str(pwd.getpwnam(cfg.server.user).pw_uid)}
        os.kill(first, signal.SIGHUP)  # passed on by serve in normal use; the console survives it
        time.sleep(0.5)
        assert _wait_answer(web_port, ca).status_code == 200 and _console_child(gateway) == first
        os.kill(first, signal.SIGKILL)
        second = _console_child(gateway, other_than=first)
        assert _wait_answer(web_port, ca).status_code == 200  # on the same socket, kept by serve
        # A new certificate bound to https, then SIGHUP to serve: passed on, the console serves it.
        command = [sys.executable, "-m", "edgeward", "cert", "new", "mx.example.test", "--service", "https"]
        made = subprocess.run(
            [*command, "--config", str(config)], capture_output=True, text=True, check=False
        )
        assert made.returncode == 0, made.stderr
        new_ca, _key = CertificateStore(cfg.resolve(cfg.tls.store)).binding_for("https")
        assert new_ca != ca
        with pytest.raises(httpx.ConnectError):  # not before the reload
            _get(web_port, new_ca)
        gateway.signal(signal.SIGHUP)
        try:
            reloaded = _wait_answer(web_port, new_ca, timeout=10)
        except httpx.ConnectError:
            raise AssertionError(gateway.log.read_text()[-3000:]) from None
        assert reloaded.status_code == 200 and "SIGHUP: kept the old" not in gateway.log.read_text()
        assert _console_child(gateway) == second  # reloaded, not restarted
    finally:
        children = gateway.children(timeout=1) if gateway.proc is not None else []
        assert gateway.stop() == 0
    for pid in children:
        assert not _cmdline(pid) or "edgeward" not in " ".join(_cmdline(pid)), f"{pid} still runs"
    with pytest.raises(httpx.TransportError):
        _get(web_port, ca)
    assert "web console process exited with -9; restarting" in gateway.log.read_text()
