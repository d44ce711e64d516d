"""Running real gateways and real downstream servers for end-to-end tests.

``InProcessGateway`` runs a ``Gateway`` on its own event loop in a thread, so tests can drive
it with blocking clients (smtplib, swaks). ``GatewayProcess`` runs ``edgeward serve`` as a
child process, for tests that kill it or send it signals. ``SmtpSink`` is Postfix's
smtp-sink, the downstream that records what it receives.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edgeward.config.load import parse_config
from edgeward.config.schema import Config
from edgeward.runtime import Gateway
from edgeward.server.listener import bind_sockets
from tests.ports import free_port as free_port

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SWAKS = shutil.which("swaks")
REPO = Path(__file__).resolve().parents[2]


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port}")


def wait_banner(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    """Wait until a server on ``port`` greets with 220: bound is not yet serving."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                if s.recv(4).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"no SMTP greeting on {host}:{port}")


def shared_tmpdir(prefix: str) -> Path:
    """A temp folder the unprivileged service user can enter (pytest's are root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


class SmtpSink:
    """Postfix's smtp-sink on a loopback port, dumping each message into a folder."""

    def __init__(self, root: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.dir = root / f"sink-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o777)
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SmtpSink:
        args = [SMTP_SINK]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        args += ["-d", f"{self.dir}/%M.", *self.extra, f"127.0.0.1:{self.port}", "256"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def messages(self) -> list[bytes]:
        """What the sink received; smtp-sink writes its dumps with LF line ends."""
        return [p.read_bytes() for p in sorted(self.dir.rglob("*")) if p.is_file()]

    def wait_for(self, count: int, timeout: float = 60.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # An empty dump is a message still arriving, or one a sink stopped mid-transfer
            # left behind (the gateway sends that message again): neither counts.
            found = [m for m in self.messages() if m]
            if len(found) >= count:
                # smtp-sink writes a dump while the message arrives: wait until none still grows.
                time.sleep(0.1)
                again = [m for m in self.messages() if m]
                if again == found:
                    return found
            time.sleep(0.05)
        raise TimeoutError(f"sink got {len(self.messages())} of {count} messages")


def gateway_config(root: Path, *, port: int, sink_port: int | None = None, **extra: Any) -> Config:
    """A loopback configuration: example.test accepted, 127.0.0.1 may relay, 127.0.0.2 may not."""
    send: dict[str, Any] = {"name": "inbound", "address_spaces": ["example.test", "*"]}
    if sink_port is not None:
        send["smart_hosts"] = [f"127.0.0.1:{sink_port}"]
    else:
        send["drop_dir"] = "drop"
    connector: dict[str, Any] = {
        "name": "internet", "bindings": [f"127.0.0.1:{port}"], "remote_ranges": ["0.0.0.0/0"],
        "tarpit_interval": 0,
    }  # fmt: skip
    relay: dict[str, Any] = {
        "name": "relay", "bindings": [f"127.0.0.1:{port}"], "remote_ranges": ["127.0.0.1/32"],
        "permissions": ["submit", "relay"], "tarpit_interval": 0,
    }  # fmt: skip
    connector.update(extra.pop("connector", {}))
    relay.update(extra.pop("relay", {}))
    data: dict[str, Any] = {
        "server": {
            "hostname": "mx.example.test",
            "data_dir": str(root),
            "user": "edgeward",
            "shutdown_grace": 5,
        },
        "accepted_domains": ["example.test"],
        "receive_connectors": [connector, relay],
        "send_connectors": [send],
        "queue": {"glitch_retry_interval": 1, "transient_retry_interval": 1, "scan_interval": 0.2},
        # Sender authentication asks DNS; a test that wants it passes its own nsd in [dns].
        "spf": {"enabled": False},
        "dmarc": {"enabled": False},
    }
    for key, value in extra.items():
        data[key] = value
    return parse_config(data, base=root)


# Appended to a configuration ``edgeward init`` wrote: SPF and DMARC would ask the host's own
# resolver about the tests' made-up domains, and test traffic stays on loopback. Tests of those
# agents serve their zones from nsd and turn them on themselves.
NO_OUTSIDE_DNS = "\n[spf]\nenabled = false\n\n[dmarc]\nenabled = false\n"


class InProcessGateway:
    """A Gateway on its own loop in a background thread."""

    def __init__(self, config: Config, **gateway: Any) -> None:
        self.config = config
        self.gateway_options = gateway  # keyword arguments of Gateway (policy_store=...)
        self.loop = asyncio.new_event_loop()
        self.gateway: Gateway | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> InProcessGateway:
        self.thread.start()
        sockets = bind_sockets(self.config.receive_connectors)

        async def start() -> Gateway:
            gw = Gateway(self.config, **self.gateway_options)
            await gw.start(sockets)
            return gw

        self.gateway = asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)
        return self

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc: object) -> None:
        if self.gateway is not None:
            self.call(self.gateway.stop(), 60)
        # Let transports closed during the stop finish closing before the loop goes away.
        self.call(asyncio.sleep(0.2), 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class GatewayProcess:
    """``edgeward serve`` as a child process."""

    def __init__(self, config_path: Path, port: int) -> None:
        self.config_path = config_path
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = config_path.parent / "serve.log"

    def start(self) -> GatewayProcess:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edgeward", "serve", "--config", str(self.config_path)],
                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_banner(self.port)
        except TimeoutError:
            raise RuntimeError(self.log.read_text()) from None
        return self

    def children(self, timeout: float = 20.0) -> list[int]:
        """The gateway's child processes (the delivery process), once there are any."""
        assert self.proc is not None
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [int(p) for p in path.read_text().split()]
            if found:
                return found
            time.sleep(0.05)
        return []

    def children_in(self, role: str, count: int = 1, timeout: float = 20.0) -> list[int]:
        """The child processes started with ``--role role``, once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [pid for pid in self.children(timeout) if _role_of(pid) == role]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def delivery(self, timeout: float = 20.0) -> int:
        """The delivery process's pid."""
        [pid] = self.children_in("deliver", 1, timeout)
        return pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; an unclean exit raises with the gateway's log in the message."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self.proc = None
        if rc != 0:
            raise AssertionError(f"edgeward serve exited with {rc}:\n{self.log.read_text()[-4000:]}")
        return rc


def _role_of(pid: int) -> str:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    return args[args.index(b"--role") + 1].decode() if b"--role" in args else ""


def insecure_context() -> ssl.SSLContext:
    """A client context that encrypts without checking the server (tests of what follows TLS)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
