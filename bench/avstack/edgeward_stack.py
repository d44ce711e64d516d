"""Edgeward under test: the anti-virus agent with clamd, YARA and oletools, and nothing else.

The configuration is written in full (``config_text``; ``edgeward config check`` must accept
it), for an edge in front of ``bench.test`` delivering to the sink, with:

- ``[antivirus]`` on, every engine required (``require = "all"``): clamd over the shared
  socket (the one amavisd asks), YARA over :data:`YARA_RULES` written to the stack's folder,
  the oletools analysis in its worker processes; the attachment filter at its defaults (as
  amavis's banned-file checks are);
- ``vba_autoexec = "score"`` and the macro findings scored 0 (``[scores]``): the Office file
  of the mix has an auto-run macro, which Edgeward refuses by default (the action, or the score
  table: 2 + 5 + 2 reaches the reject total) and amavis with clamd alone delivers. Analysed as
  always, findings logged, it is then delivered by both, so both do the same work downstream;
- the anti-spam agents off (content filter, connection filter, SPF, DMARC, reputation,
  protocol analysis), as amavis's spam checks are off;
- the durable queue (``fsync = true``): a ``250`` means the message is on disk, where amavis's
  means the sink has it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from relay.edgeward import EdgewardRelay
from relay.procs import BenchError, cpu_seconds

from edgeward.testing.clamav import TEST_PATTERN

SCAN_HEADER = "X-Edgeward-AV"
ENGINES = ("clamd", "yara", "office")

# A small rules folder of the kind sites keep next to ClamAV: a test pattern, script droppers,
# a PE file hidden in a non-executable part, a few strings phishing kits carry.
YARA_RULES = {
    "bench.yar": f"""
rule Edgeward_Bench_Test_Pattern
{{
    strings:
        $p = "{TEST_PATTERN.decode()}"
    condition:
        $p
}}

rule Script_Dropper
{{
    strings:
        $a = "WScript.Shell" nocase
        $b = "powershell -enc" nocase
        $c = "FromBase64String(" nocase
        $d = "DownloadString(" nocase
    condition:
        2 of them
}}

rule PE_In_Disguise
{{
    strings:
        $dos = "This program cannot be run in DOS mode"
    condition:
        uint16(0) == 0x5A4D and $dos
}}

rule Phish_Kit_Strings
{{
    strings:
        $a = "verify your account" nocase
        $b = "password" nocase
        $c = /https?:\\/\\/[a-z0-9.-]+\\.(zip|top|xyz)\\// nocase
    condition:
        all of them
}}
""",
}


class EdgewardStack(EdgewardRelay):
    name = "edgeward"

    def __init__(
        self,
        workdir: Path,
        sink_port: int,
        command: list[str] | None,
        clamd_socket: Path,
        stream_max: int,
        receivers: str = "auto",
    ) -> None:
        super().__init__(workdir, sink_port, command)
        self.clamd_socket = clamd_socket
        self.stream_max = stream_max
        self.receivers = receivers

    def config_text(self) -> str:
        return f"""# Edgeward for the anti-virus benchmark (bench/avstack/edgeward_stack.py).
accepted_domains = ["bench.test"]

[server]
hostname = "edgeward.bench.test"
data_dir = "."
user = "edgeward"
receivers = {self.receivers if self.receivers.isdigit() else '"' + self.receivers + '"'}

[[receive_connectors]]
name = "internet"
bindings = ["127.0.0.1:{self.port}"]
remote_ranges = ["0.0.0.0/0", "::/0"]
permissions = ["submit"]
max_message_size = "10MB"

[[send_connectors]]
name = "inbound"
address_spaces = ["bench.test"]
smart_hosts = ["127.0.0.1:{self.sink_port}"]
tls = "none"

[queue]
fsync = true
min_free_disk = "500MB"

[connection_filter]
enabled = false

[spf]
enabled = false

[dmarc]
enabled = false

[agents.content_filter]
enabled = false

[agents.protocol]
enabled = false

[agents.reputation]
enabled = false

[learning]
enabled = false

[antivirus]
enabled = true
require = "all"

[antivirus.clamd]
socket = "{self.clamd_socket}"
max_stream = {self.stream_max}
required = true

[antivirus.yara]
enabled = true
rules_dir = "yara"
required = true

[antivirus.office]
required = true
vba_autoexec = "score"

[scores]
AV_MACRO = 0.0
AV_MACRO_AUTOEXEC = 0.0
AV_OLE_OBJECT = 0.0

[logging]
dir = "log"
"""

    def setup(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for d in (self.dir, self.dir.parent):
            d.chmod(0o755)
        rules = self.dir / "yara"
        rules.mkdir(exist_ok=True)
        for name, text in YARA_RULES.items():
            (rules / name).write_text(text)
        self.config_file.write_text(self.config_text())
        check = subprocess.run(
            [*self.command, "config", "check", "-c", str(self.config_file)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if check.returncode != 0:
            raise BenchError(f"edgeward config check failed: {(check.stdout + check.stderr).strip()[-2000:]}")

    def cpu_seconds(self) -> float:
        """The serve process and its children (delivery, the oletools workers)."""
        return cpu_seconds(self.root_pid) if self.root_pid else 0.0
