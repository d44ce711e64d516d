"""A real authoritative DNS server (nsd, Debian package ``nsd``) serving test zones on loopback.

``start_nsd(root, {"test": ZONE_TEXT, ...})`` writes the zone files and a configuration under
``root``, starts nsd in the foreground on 127.0.0.1:<free port> and waits until every zone
answers its SOA query. Tests that need their own zones (signed zones for DNSSEC, policy records
for MTA-STS) start their own server instead of editing a shared one.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.resolver

from tests.ports import free_port

NSD = shutil.which("nsd") or ("/usr/sbin/nsd" if Path("/usr/sbin/nsd").exists() else None)


@dataclass
class Nsd:
    port: int
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _wait_zones(port: int, proc: subprocess.Popen[bytes], zones: list[str]) -> None:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.lifetime = 1.0
    pending = list(zones)
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"nsd exited with {proc.returncode}")
        try:
            while pending:
                resolver.resolve(pending[0].rstrip(".") + ".", "SOA")
                pending.pop(0)
            return
        except dns.exception.DNSException:
            time.sleep(0.02)
    raise RuntimeError(f"nsd did not serve {pending}")


def start_nsd(root: Path, zones: Mapping[str, str]) -> Nsd:
    """Serve ``zones`` (zone name: zone file text) from nsd; the caller stops it."""
    if NSD is None:
        raise FileNotFoundError("nsd is not installed (apt-get install -y nsd)")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    stanzas = []
    for name, text in zones.items():
        filename = f"{name.rstrip('.') or 'root'}.zone"
        (root / filename).write_text(text)
        stanzas.append(f"zone:\n  name: {name}\n  zonefile: {filename}\n")
    (root / "nsd.conf").write_text(
        f"""server:
  ip-address: 127.0.0.1
  port: {port}
  username: ""
  chroot: ""
  zonesdir: "{root}"
  database: ""
  zonelistfile: "{root}/zone.list"
  xfrdfile: "{root}/xfrd.state"
  pidfile: "{root}/nsd.pid"
  logfile: "{root}/nsd.log"
  server-count: 1
remote-control:
  control-enable: no
"""
        + "".join(stanzas)
    )
    proc = subprocess.Popen([NSD, "-d", "-c", str(root / "nsd.conf")])
    try:
        _wait_zones(port, proc, list(zones))
    except BaseException:
        proc.terminate()
        proc.wait(timeout=10)
        raise
    return Nsd(port, proc)
