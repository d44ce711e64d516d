"""Edgeward under test: every agent that needs no user data on, DNS from the namespace's unbound.

The configuration is written in full (``config_text``; ``edgeward config check`` must accept it)
and follows what ``edgeward init`` writes for an edge in front of ``bench.test``, with:

- the connection filter asking both benchmark DNSBLs (``[[connection_filter.block_providers]]``);
- SPF on, refusing SPF fail at MAIL (``fail_action = "reject"``, as policyd-spf's default);
- sender-auth on: DKIM, ARC and DMARC with ``p=reject`` honoured (550 5.7.1);
- protocol analysis and the content filter on (their defaults), sender reputation on;
- ``[dns]`` at 127.0.0.1:53, the same unbound the peer's daemons ask;
- delivery to the sink without TLS (the peer's ``smtp_tls_security_level = none``);
- the durable queue (``fsync = true``), as Postfix's.

``greet_pause`` comes from ``--greet-pause`` (default 0, Edgeward's own default); see the README
for why the pregreet wait is not compared.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from relay.edgeward import REPO, EdgewardRelay
from relay.procs import BenchError, cpu_seconds

from antispam.dns import DNSBL_ZONES

AUTHSERV_ID = "edgeward.bench.test"


class EdgewardStack(EdgewardRelay):
    name = "edgeward"

    def __init__(
        self, workdir: Path, sink_port: int, command: list[str] | None, greet_pause: float,
        receivers: str = "",
    ) -> None:  # fmt: skip
        super().__init__(workdir, sink_port, command)
        self.greet_pause = greet_pause
        self.receivers = receivers  # [server] receivers; empty: Edgeward's default

    def config_text(self) -> str:
        providers = "".join(
            f'\n[[connection_filter.block_providers]]\nname = "{zone.split(".")[0]}"\nzone = "{zone}"\n'
            'match = "any"\n'
            for zone in DNSBL_ZONES
        )
        return f"""# Edgeward for the anti-spam benchmark (bench/antispam/edgeward_stack.py).
accepted_domains = ["bench.test"]

[server]
hostname = "{AUTHSERV_ID}"
data_dir = "."
user = "edgeward"
{f"receivers = {self.receivers}" if self.receivers.isdigit() else ""}

[[receive_connectors]]
name = "internet"
bindings = ["127.0.0.1:{self.port}"]
remote_ranges = ["0.0.0.0/0", "::/0"]
permissions = ["submit"]
max_message_size = "10MB"
max_recipients = 200
max_connections = 5000
max_connections_per_source = 100
greet_pause = {self.greet_pause}

[[receive_connectors]]
name = "relay"
bindings = ["127.0.0.1:{self.port}"]
remote_ranges = ["127.0.0.1/32"]
permissions = ["submit", "relay"]

[[send_connectors]]
name = "inbound"
address_spaces = ["bench.test"]
smart_hosts = ["127.0.0.1:{self.sink_port}"]
tls = "none"

[queue]
fsync = true
min_free_disk = "500MB"

[dns]
servers = ["127.0.0.1"]
port = 53
timeout = 5

[connection_filter]
enabled = true
{providers}
[spf]
enabled = true
fail_action = "reject"

[dmarc]
enabled = true
reject_action = "reject"

[logging]
dir = "log"
"""

    def setup(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for d in (self.dir, self.dir.parent):
            d.chmod(0o755)
        self.config_file.write_text(self.config_text())
        check = subprocess.run(
            [*self.command, "config", "check", "-c", str(self.config_file)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if check.returncode != 0:
            raise BenchError(f"edgeward config check failed: {(check.stdout + check.stderr).strip()[-2000:]}")

    def pids(self) -> list[int]:
        return [self.root_pid] if self.root_pid else []

    def cpu_seconds(self) -> float:
        """The serve process and its children (the delivery process)."""
        return cpu_seconds(self.root_pid) if self.root_pid else 0.0


def use_tree_sources() -> None:
    """Make ``python -m edgeward`` run this tree's code when the repository has no venv of its own.

    The relay benchmark's default command is ``REPO/.venv/bin/edgeward``, else ``python -m
    edgeward``; a work tree without a venv would then import whatever Edgeward the interpreter
    has installed. Putting this tree's src/ first on PYTHONPATH (inherited by the gateway) makes
    the code measured the code next to the benchmark.
    """
    if (REPO / ".venv" / "bin" / "edgeward").exists():
        return
    src = str(REPO / "src")
    path = os.environ.get("PYTHONPATH", "")
    if src not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, path) if p)
