"""A real rsyslog (Debian package ``rsyslog``) on loopback UDP and TCP ports, writing JSON lines.

``start_rsyslog(root)`` writes a configuration under ``root`` that loads only ``imudp``,
``imtcp`` and ``imuxsock`` with the system socket off (no /dev/log, no kernel log: the host's
logging is untouched), listens on two free loopback ports and on ``root/log.sock`` (with the
ordinary parser chain, not imuxsock's special local parser), and writes every message it
parsed as one JSON object of rsyslog's own properties (``protocol-version`` is 1 only when its
RFC 5424 parser accepted the message).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.ports import free_port

RSYSLOGD = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None)

_PROPERTIES = {
    "version": "protocol-version", "sd": "structured-data", "msgid": "msgid", "app": "app-name",
    "procid": "procid", "host": "hostname", "facility": "syslogfacility-text",
    "severity": "syslogseverity-text", "msg": "msg", "input": "inputname",
}  # fmt: skip


@dataclass
class Rsyslog:
    root: Path
    udp_port: int
    tcp_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def unix_socket(self) -> Path:
        return self.root / "log.sock"

    @property
    def out(self) -> Path:
        return self.root / "out.jsonl"

    def lines(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text(encoding="utf-8").splitlines() if line]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.lines()
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise TimeoutError(f"rsyslog wrote {len(self.lines())} of {count} messages")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
            self.proc = None


def _template() -> str:
    parts = [
        f'property(outname="{out}" name="{name}" format="jsonf")' for out, name in _PROPERTIES.items()
    ]
    return 'constant(value="{")\n' + '\nconstant(value=",")\n'.join(parts) + '\nconstant(value="}\\n")'


def start_rsyslog(root: Path) -> Rsyslog:
    assert RSYSLOGD is not None
    server = Rsyslog(root, free_port(), free_port())
    conf = root / "rsyslog.conf"
    conf.write_text(
        f'global(workDirectory="{root}" maxMessageSize="64k")\n'
        'module(load="imudp")\nmodule(load="imtcp")\nmodule(load="imuxsock" SysSock.Use="off")\n'
        f'input(type="imudp" address="127.0.0.1" port="{server.udp_port}")\n'
        f'input(type="imtcp" address="127.0.0.1" port="{server.tcp_port}")\n'
        f'input(type="imuxsock" Socket="{server.unix_socket}" UseSpecialParser="off" ParseHostname="on")\n'
        f'template(name="json" type="list") {{\n{_template()}\n}}\n'
        f'*.* action(type="omfile" file="{server.out}" template="json")\n'
    )
    log = (root / "rsyslogd.out").open("ab")
    server.proc = subprocess.Popen(
        [RSYSLOGD, "-n", "-f", str(conf), "-i", str(root / "rsyslogd.pid")],
        stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=1):
                pass
            if server.unix_socket.exists():
                break
            time.sleep(0.05)
        except OSError:
            if server.proc.poll() is not None:
                raise RuntimeError((root / "rsyslogd.out").read_text()) from None
            time.sleep(0.05)
    else:
        server.stop()
        raise TimeoutError("rsyslogd did not listen")
    return server
