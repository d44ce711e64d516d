"""The benchmark's DNS: nsd serving its zones, unbound on 127.0.0.1:53 in front of it.

Postfix, policyd-spf, OpenDKIM and OpenDMARC ask the resolver of /etc/resolv.conf, which only
knows port 53; inside the benchmark's network namespace 127.0.0.1:53 is unbound, caching as a
site resolver does, with nsd (authoritative for every benchmark zone) as its only upstream.
Edgeward's ``[dns]`` points at the same unbound, so both stacks get the same answers at the same
cost.

Zones:

- ``sender.example``: the sender domain (not under .test, which libunbound, OpenDKIM's
  resolver, answers NXDOMAIN for itself). SPF passes for the client range, a DKIM key at
  ``s1._domainkey`` (the load generator signs with it), DMARC ``p=reject``.
- ``forged.example``: a p=reject domain whose key is NOT the one the probe signs with, and whose
  SPF allows no client: a probe from it must be refused by DMARC in both stacks.
- ``bl1.test`` and ``bl2.test``: DNSBLs that list a few addresses with 127.0.0.x answers, among
  them ``LISTED_CLIENT`` (the DNSBL probe); the load's clients are not listed, as most real
  clients are not.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from relay.procs import BenchError, free_port, stop_popen

NSD = shutil.which("nsd") or "/usr/sbin/nsd"
UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"

SENDER_DOMAIN = "sender.example"
FORGED_DOMAIN = "forged.example"
SELECTOR = "s1"
DNSBL_ZONES = ("bl1.test", "bl2.test")
CLIENT_NET = "127.0.1.0/24"  # the load's client addresses live here (SPF pass, not listed)
# Listed by both DNSBLs, and inside the SPF-pass range so that only the DNSBL can refuse it.
LISTED_CLIENT = "127.0.1.250"
TTL = 300
# unbound also listens here (an extra address on the namespace's loopback device), for
# resolvers that refuse to ask a 127.0.0.0/8 server (libunbound, in OpenDKIM).
RESOLVER_ADDRESS = "10.53.0.1"


def _reverse(ip: str) -> str:
    return ".".join(reversed(ip.split(".")))


def zones(dkim_record: str) -> dict[str, str]:
    """Zone name -> zone file text."""

    def soa(origin: str) -> str:
        return (
            f"$ORIGIN {origin}.\n$TTL {TTL}\n"
            f"@ IN SOA ns.{origin}. admin.{origin}. 1 3600 600 86400 {TTL}\n"
            f"@ IN NS ns.{origin}.\nns IN A 127.0.0.1\n"
        )

    # TXT strings are limited to 255 characters: a 2048-bit key record is split.
    chunks = " ".join(f'"{dkim_record[i : i + 250]}"' for i in range(0, len(dkim_record), 250))
    sender = soa(SENDER_DOMAIN) + (
        f'@ IN TXT "v=spf1 ip4:{CLIENT_NET} -all"\n'
        f"@ IN MX 10 mx.{SENDER_DOMAIN}.\nmx IN A 127.0.0.1\n"
        f"{SELECTOR}._domainkey IN TXT {chunks}\n"
        '_dmarc IN TXT "v=DMARC1; p=reject; adkim=r; aspf=r"\n'
    )
    forged = soa(FORGED_DOMAIN) + (
        f'@ IN TXT "v=spf1 -all"\n{SELECTOR}._domainkey IN TXT {chunks}\n_dmarc IN TXT "v=DMARC1; p=reject"\n'
    )
    out = {SENDER_DOMAIN: sender, FORGED_DOMAIN: forged}
    for n, zone in enumerate(DNSBL_ZONES, start=1):
        listed = [LISTED_CLIENT, "192.0.2.10", "198.51.100.7", "203.0.113.99"]
        body = "".join(f"{_reverse(ip)} IN A 127.0.0.{1 + n}\n" for ip in listed)
        out[zone] = soa(zone) + body
    return out


@dataclass
class Dns:
    """nsd on a free loopback port and unbound on 127.0.0.1:53, both in the foreground."""

    root: Path
    nsd_port: int = 0
    _nsd: subprocess.Popen[bytes] | None = None
    _unbound: subprocess.Popen[bytes] | None = None

    def start(self, zone_texts: Mapping[str, str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.nsd_port = free_port()
        nsd_dir = self.root / "nsd"
        nsd_dir.mkdir(exist_ok=True)
        stanzas = []
        for name, text in zone_texts.items():
            (nsd_dir / f"{name}.zone").write_text(text)
            stanzas.append(f"zone:\n  name: {name}\n  zonefile: {name}.zone\n")
        (nsd_dir / "nsd.conf").write_text(
            "server:\n  ip-address: 127.0.0.1\n"
            f"  port: {self.nsd_port}\n"
            f'  username: ""\n  chroot: ""\n  zonesdir: "{nsd_dir}"\n  database: ""\n'
            f'  zonelistfile: "{nsd_dir}/zone.list"\n  xfrdfile: "{nsd_dir}/xfrd.state"\n'
            f'  pidfile: "{nsd_dir}/nsd.pid"\n  logfile: "{nsd_dir}/nsd.log"\n  server-count: 1\n'
            "remote-control:\n  control-enable: no\n" + "".join(stanzas)
        )
        self._nsd = subprocess.Popen(
            [NSD, "-d", "-c", str(nsd_dir / "nsd.conf")], stdin=subprocess.DEVNULL, start_new_session=True
        )
        ub_dir = self.root / "unbound"
        ub_dir.mkdir(exist_ok=True)
        lines = [
            "server:",
            "  interface: 127.0.0.1",
            f"  interface: {RESOLVER_ADDRESS}",
            "  port: 53",
            "  do-ip6: no",
            "  access-control: 127.0.0.0/8 allow",
            f"  access-control: {RESOLVER_ADDRESS}/32 allow",
            "  do-not-query-localhost: no",
            '  username: ""',
            '  chroot: ""',
            f'  directory: "{ub_dir}"',
            f'  pidfile: "{ub_dir}/unbound.pid"',
            "  use-syslog: no",
            f'  logfile: "{ub_dir}/unbound.log"',
            "  verbosity: 0",
            "  num-threads: 1",
            "  use-systemd: no",
            '  module-config: "iterator"',
            "  qname-minimisation: no",
            "  prefetch: no",
            '  local-zone: "test." nodefault',
            # 127.in-addr.arpa stays unbound's own local zone: PTR queries for loopback clients
            # (Postfix asks for every connection) get an immediate NXDOMAIN, as for a client with
            # no reverse name. Anything else is asked of nsd, which refuses unknown names.
            "remote-control:",
            "  control-enable: no",
            "forward-zone:",
            '  name: "."',
            f"  forward-addr: 127.0.0.1@{self.nsd_port}",
        ]
        (ub_dir / "unbound.conf").write_text("\n".join(lines) + "\n")
        self._unbound = subprocess.Popen(
            [UNBOUND, "-d", "-c", str(ub_dir / "unbound.conf")],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait(f"{SENDER_DOMAIN}.")

    def _wait(self, name: str) -> None:
        import dns.exception
        import dns.message
        import dns.query
        import dns.rcode

        query = dns.message.make_query(name, "SOA")
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            for name_, proc in (("nsd", self._nsd), ("unbound", self._unbound)):
                if proc is not None and proc.poll() is not None:
                    raise BenchError(f"{name_} exited with {proc.returncode} (see {self.root})")
            try:
                answer = dns.query.udp(query, "127.0.0.1", port=53, timeout=0.5)
                if answer.rcode() == dns.rcode.NOERROR and answer.answer:
                    return
            except (dns.exception.DNSException, OSError):
                pass
            time.sleep(0.05)
        raise BenchError("unbound on 127.0.0.1:53 did not answer for the benchmark zones")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in (self._nsd, self._unbound) if p is not None]

    def stop(self) -> None:
        for proc in (self._unbound, self._nsd):
            if proc is not None:
                stop_popen(proc, 5.0)
        self._unbound = self._nsd = None
