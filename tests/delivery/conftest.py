"""Real downstream servers for delivery tests: smtp-sink, aiosmtpd (with STARTTLS), and nsd.

Every server listens on 127.0.0.1 on a free port and is stopped when the test ends. The nsd
fixture serves the zone ``test.`` with the MX cases routing must handle; tests that need a
binary that is not installed are skipped with the reason.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.dnsserver import NSD, start_nsd
from tests.ports import free_port as free_port
from tests.smtpdownstream import ClosingController as Controller

SMTP_SINK = "/usr/sbin/smtp-sink"


def wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts on 127.0.0.1:port (a started server is ready)."""
    for _ in range(500):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"nothing listening on {port}")


# -- smtp-sink ----------------------------------------------------------------------------------


@dataclass
class Sink:
    port: int
    dump: Path

    def messages(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.dump.iterdir()) if p.is_file()]


@pytest.fixture
def smtp_sink() -> Iterator[Callable[..., Sink]]:
    """Start smtp-sink with extra options, e.g. ``smtp_sink("-f", "RCPT")``."""
    if not Path(SMTP_SINK).exists():
        pytest.skip("Postfix smtp-sink is not installed (apt-get install postfix)")
    procs: list[subprocess.Popen[bytes]] = []
    # smtp-sink drops to 'nobody' before it writes, and pytest's tmp_path sits under a 0700
    # folder; so the dump folder lives directly in the system temp folder.
    base = Path(tempfile.mkdtemp(prefix="edgeward-sink-"))
    base.chmod(0o755)

    def start(*options: str) -> Sink:
        dump = base / f"sink{len(procs)}"
        dump.mkdir()
        dump.chmod(0o777)
        port = free_port()
        cmd = [SMTP_SINK, "-u", "nobody", "-d", f"{dump}/%M.", *options, f"127.0.0.1:{port}", "10"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        wait_listening(port, proc)
        return Sink(port, dump)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
    shutil.rmtree(base, ignore_errors=True)


# -- aiosmtpd -----------------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str]
    rcpt_options: list[str]
    tls: bool


@dataclass
class Recorder:
    """An aiosmtpd handler that records transactions and answers as told."""

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    mail_reply: str | None = None
    data_reply: str | None = None
    drop_extensions: tuple[str, ...] = ()
    messages: list[Received] = field(default_factory=list)
    helo_names: list[str] = field(default_factory=list)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.helo_names.append(hostname)
        session.host_name = hostname
        # Hide extensions to play an older server; the last line must stay "250 ...".
        kept = [r for r in responses if not any(r[4:].upper().startswith(x) for x in self.drop_extensions)]
        if kept and kept[-1].startswith("250-"):
            kept[-1] = "250 " + kept[-1][4:]
        return kept

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        self.messages.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content,
                list(envelope.mail_options),
                list(envelope.rcpt_options),
                session.ssl is not None,
            )
        )
        return "250 2.0.0 Ok: queued"


@dataclass
class Downstream:
    port: int
    handler: Recorder


@pytest.fixture(scope="session")
def tls_server_context() -> ssl.SSLContext:
    ca = trustme.CA()
    cert = ca.issue_cert("mx1.test", "127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


@pytest.fixture
def downstream() -> Iterator[Callable[..., Downstream]]:
    """Start an aiosmtpd server: ``downstream(tls_context=None, **smtp_kwargs)``."""
    controllers: list[Controller] = []

    def start(
        *, tls_context: ssl.SSLContext | None = None, handler: Recorder | None = None, **kw: Any
    ) -> Downstream:
        handler = handler or Recorder()
        port = free_port()
        controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=port,
            tls_context=tls_context,
            decode_data=False,
            **kw,
        )
        controller.start()
        controllers.append(controller)
        return Downstream(port, handler)

    yield start
    for controller in controllers:
        controller.stop()


# -- nsd ----------------------------------------------------------------------------------------

ZONE = """$ORIGIN test.
$TTL 60
@ IN SOA ns.test. admin.test. 1 3600 600 86400 60
@ IN NS ns.test.
ns IN A 127.0.0.1
mx1 IN A 127.0.0.1
mx2 IN A 127.0.0.1
mx3 IN AAAA ::1
dangling IN MX 10 nowhere.test.
multi IN MX 20 mx2.test.
multi IN MX 10 mx1.test.
multi IN MX 10 mx3.test.
nullmx IN MX 0 .
implicit IN A 127.0.0.1
noaddr IN TXT "v=spf1 -all"
"""


@dataclass
class Nameserver:
    port: int


@pytest.fixture(scope="session")
def nameserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nameserver]:
    """nsd authoritative for ``test.`` on 127.0.0.1:<free port>."""
    if NSD is None:
        pytest.skip("nsd is not installed (apt-get install -y nsd)")
    server = start_nsd(tmp_path_factory.mktemp("nsd"), {"test": ZONE})
    try:
        yield Nameserver(server.port)
    finally:
        server.stop()
