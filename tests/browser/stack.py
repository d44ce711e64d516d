"""A real gateway, a real downstream and ``edgeward web`` over HTTPS, for the browser tests.

``running_stack`` starts, in one shared temporary folder: Postfix's smtp-sink (the downstream),
``edgeward serve`` that quarantines spam (content filter, threshold 7) and relays the rest
to the sink, and ``edgeward web`` as a child process (as root it drops to the service user).
The console's accounts ``boss`` (admin) and ``clerk`` (readonly) and one API token of each
role are made before the console starts. The digest's release links point at the
console (``[quarantine] release_link_base``), so a link taken from a digest the sink received
is opened in the browser as a recipient would open it.

The browser reaches the console by the certificate's name, ``mx.example.test``, which the
browser maps to 127.0.0.1; ``spki`` is the certificate's key pin that Chromium is told to
trust (see ``tests/browser/driver.py``).
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import smtplib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edgeward.config.load import load_config
from edgeward.config.schema import Config
from edgeward.tls.store import CertificateStore
from edgeward.web.auth import WebAccounts
from tests.e2e.harness import GatewayProcess, SmtpSink, free_port
from tests.e2e.test_web_console import _edgeward, _web

__all__ = ["ADMIN", "HOSTNAME", "PASSWORD", "READER", "Stack", "running_stack"]

HOSTNAME = "mx.example.test"
ADMIN, READER = "boss", "clerk"
PASSWORD = "a long console password"


def spki_pin(cert: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)): the form ``--ignore-certificate-errors-spki-list`` takes."""
    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@dataclass
class Stack:
    root: Path
    config_path: Path
    config: Config
    smtp_port: int
    web_port: int
    sink: SmtpSink
    cert: Path  # the console's (self-signed) certificate
    spki: str
    admin_token: str = ""
    reader_token: str = ""
    _seen: set[str] = field(default_factory=set)

    @property
    def origin(self) -> str:
        return f"https://{HOSTNAME}:{self.web_port}"

    def send(self, data: bytes, rcpts: list[str], sender: str = "deals4you@cheap-offers.biz") -> None:
        """One message in over SMTP from 127.0.0.2 (an outside client: filtered, may not relay)."""
        with smtplib.SMTP("127.0.0.1", self.smtp_port, source_address=("127.0.0.2", 0), timeout=30) as c:
            c.ehlo("client.remote.test")
            code, text = c.mail(sender)
            assert code == 250, text
            for r in rcpts:
                code, text = c.rcpt(r)
                assert code == 250, text
            code, text = c.data(data)
            assert code == 250, text

    def cli(self, *args: str, stdin: str = "") -> str:
        """``edgeward ARGS -c CONFIG`` as a child process; its standard output."""
        return _edgeward(*args, "-c", str(self.config_path), stdin=stdin)

    def arrived(self, match: Callable[[EmailMessage], bool], timeout: float = 60.0) -> EmailMessage:
        """The first message the sink received, not returned before, that ``match`` accepts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path in sorted(self.sink.dir.rglob("*")):
                if not path.is_file() or str(path) in self._seen or not (raw := path.read_bytes()):
                    continue
                msg = email.message_from_bytes(raw, policy=email.policy.default)
                assert isinstance(msg, EmailMessage)
                if match(msg):
                    time.sleep(0.2)  # smtp-sink writes while the message arrives
                    if path.read_bytes() == raw:
                        self._seen.add(str(path))
                        return msg
            time.sleep(0.1)
        raise TimeoutError("no matching message reached the sink")


def _config_text(root: Path, smtp_port: int, sink_port: int, links: str) -> str:
    """``tests.e2e.harness.gateway_config``'s loopback set-up as a file ``edgeward serve`` reads."""
    return f"""accepted_domains = ["example.test"]
[server]
hostname = "{HOSTNAME}"
data_dir = "{root}"
user = "edgeward"
shutdown_grace = 5
[[receive_connectors]]
name = "internet"
bindings = ["127.0.0.1:{smtp_port}"]
remote_ranges = ["0.0.0.0/0"]
tarpit_interval = 0
[[receive_connectors]]
name = "relay"
bindings = ["127.0.0.1:{smtp_port}"]
remote_ranges = ["127.0.0.1/32"]
permissions = ["submit", "relay"]
tarpit_interval = 0
[[send_connectors]]
name = "inbound"
address_spaces = ["example.test", "*"]
smart_hosts = ["127.0.0.1:{sink_port}"]
[queue]
glitch_retry_interval = 1
transient_retry_interval = 1
scan_interval = 0.2
[agents.content_filter]
reject_enabled = false
quarantine_enabled = true
quarantine_threshold = 7
learning = false
[quarantine]
release_link_base = "{links}"
[spf]
enabled = false
[dmarc]
enabled = false
"""


@contextmanager
def running_stack(root: Path) -> Iterator[Stack]:
    smtp_port, web_port = free_port(), free_port()
    links = f"https://{HOSTNAME}:{web_port}/release"
    sink = SmtpSink(root).start()
    path = root / "edgeward.toml"
    path.write_text(_config_text(root, smtp_port, sink.port, links))
    # `edgeward serve`, not a gateway in this process: started as root it writes its logs and
    # spool as the service user, as in production, and the console (that user too) reads them.
    gateway = GatewayProcess(path, smtp_port)
    try:
        gateway.start()
        cfg = load_config(path)
        cert, _key = CertificateStore(cfg.resolve(cfg.tls.store)).binding_for("smtp")  # the default one
        stack = Stack(root, path, cfg, smtp_port, web_port, sink, cert, spki_pin(cert))
        # In process, not by `edgeward web user add` (tests/e2e covers that): four interpreters
        # fewer to start. As root the database is handed to the service user all the same.
        accounts = WebAccounts(cfg.resolve(Path("state")))
        accounts.add(ADMIN, PASSWORD, "admin")
        accounts.add(READER, PASSWORD, "readonly")
        stack.admin_token = accounts.add_token("ops-script", "admin")
        stack.reader_token = accounts.add_token("wallboard", "readonly")
        with _web(path, web_port):
            yield stack
    finally:
        gateway.stop()
        sink.stop()
