"""DNSSEC-signed test zones and a real validating resolver (unbound) in front of nsd.

``signed_zone(origin, body)`` signs a zone with a fresh ECDSAP256SHA256 key (NSEC denial) and
returns its text with the DS record a resolver needs as trust anchor; ``anchor_key`` and the
signature dates make zones that validate as bogus. ``tlsa_data`` computes a TLSA record's data
from a DER certificate. ``start_validating_resolver(root, zones, anchors, insecure)`` serves the
zones from nsd (``tests.dnsserver``) and starts unbound on 127.0.0.1:<free port>, with a stub
zone per test zone pointing at nsd, the given trust anchors, and nothing reachable beyond
loopback; ``stop()`` ends both. Debian packages: ``nsd`` and ``unbound``.
"""

from __future__ import annotations

import datetime
import hashlib
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.zone
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.dnsserver import NSD, Nsd, start_nsd
from tests.ports import free_port

UNBOUND = shutil.which("unbound") or ("/usr/sbin/unbound" if Path("/usr/sbin/unbound").exists() else None)
MISSING = "nsd and unbound are needed (apt-get install -y nsd unbound)"


def missing_servers() -> str | None:
    """Why the real servers cannot run here, or None."""
    return MISSING if NSD is None or UNBOUND is None else None


@dataclass(frozen=True)
class SignedZone:
    origin: str
    text: str
    # A "trust-anchor:" line's value, "<origin>. DS ...", for the key the zone is signed with
    # (or, for a bogus zone, for a key it is not signed with).
    anchor: str


def signed_zone(
    origin: str,
    body: str,
    *,
    anchor_key: ec.EllipticCurvePrivateKey | None = None,
    inception: datetime.datetime | None = None,
    expiration: datetime.datetime | None = None,
) -> SignedZone:
    """``body`` (records relative to ``origin``, SOA and NS included) signed with a new key.

    ``anchor_key`` replaces the signing key in the returned trust anchor, so every answer is
    bogus; past ``inception``/``expiration`` dates make expired signatures, bogus too.
    """
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    dnskey = dns.dnssec.make_dnskey(
        key.public_key(),
        dns.dnssec.Algorithm.ECDSAP256SHA256,
        flags=dns.dnssec.Flag.ZONE | dns.dnssec.Flag.SEP,
    )
    zone = dns.zone.from_text(f"$ORIGIN {origin}.\n$TTL 60\n{body}", origin=f"{origin}.", relativize=False)
    dns.dnssec.sign_zone(
        zone,
        keys=[(key, dnskey)],
        inception=inception or now - datetime.timedelta(hours=1),
        expiration=expiration or now + datetime.timedelta(days=2),
    )
    anchor_dnskey = dnskey
    if anchor_key is not None:
        anchor_dnskey = dns.dnssec.make_dnskey(
            anchor_key.public_key(),
            dns.dnssec.Algorithm.ECDSAP256SHA256,
            flags=dns.dnssec.Flag.ZONE | dns.dnssec.Flag.SEP,
        )
    ds = dns.dnssec.make_ds(f"{origin}.", anchor_dnskey, "SHA256")
    return SignedZone(origin, zone.to_text(relativize=False), f"{origin}. DS {ds.to_text()}")


def unsigned_zone(origin: str, body: str) -> str:
    return f"$ORIGIN {origin}.\n$TTL 60\n{body}"


def tlsa_data(der: bytes, selector: int, mtype: int) -> bytes:
    """The data of a TLSA record for the certificate ``der`` (RFC 6698 §2.1.2, §2.1.3)."""
    if selector == 1:
        cert = x509.load_der_x509_certificate(der)
        der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if mtype == 1:
        return hashlib.sha256(der).digest()
    if mtype == 2:
        return hashlib.sha512(der).digest()
    return der


def tlsa_line(owner: str, usage: int, selector: int, mtype: int, der: bytes) -> str:
    """A zone file line ``<owner> IN TLSA ...`` for the certificate ``der``."""
    return f"{owner} IN TLSA {usage} {selector} {mtype} {tlsa_data(der, selector, mtype).hex()}\n"


@dataclass
class ValidatingResolver:
    """unbound on 127.0.0.1:``port``, validating the zones nsd serves."""

    port: int
    nsd: Nsd
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        try:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        finally:
            self.nsd.stop()


def _wait_answering(port: int, proc: subprocess.Popen[bytes], probe: str, log: Path) -> None:
    query = dns.message.make_query(probe, "SOA")
    for _ in range(500):
        if proc.poll() is not None:
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"unbound exited with {proc.returncode}: {text[-2000:]}")
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
            return
        except (dns.exception.DNSException, OSError):
            time.sleep(0.02)
    raise RuntimeError("unbound did not answer")


def start_validating_resolver(
    root: Path,
    zones: Mapping[str, str],
    anchors: Sequence[str] = (),
    insecure: Sequence[str] = (),
) -> ValidatingResolver:
    """nsd serving ``zones`` (origin: zone text) and unbound validating them; the caller stops it.

    ``anchors`` are trust anchors (``"<zone>. DS ..."``) and ``insecure`` the zones unbound
    must not expect signatures for.
    """
    if UNBOUND is None:
        raise FileNotFoundError("unbound is not installed (apt-get install -y unbound)")
    nsd = start_nsd(root / "nsd", zones)
    try:
        work = root / "unbound"
        work.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log = work / "unbound.log"
        conf = work / "unbound.conf"
        lines = [
            "server:",
            "  interface: 127.0.0.1",
            f"  port: {port}",
            "  do-ip6: no",
            "  access-control: 127.0.0.0/8 allow",
            # nsd listens on loopback, which unbound refuses to query by default.
            "  do-not-query-localhost: no",
            '  username: ""',
            '  chroot: ""',
            f'  directory: "{work}"',
            f'  pidfile: "{work}/unbound.pid"',
            "  use-syslog: no",
            f'  logfile: "{log}"',
            "  verbosity: 1",
            "  val-log-level: 2",
            "  num-threads: 1",
            "  use-systemd: no",
            # Validator in front of the iterator; no root trust anchor, so only the test zones'
            # anchors make anything secure, and no query ever needs the root servers.
            '  module-config: "validator iterator"',
            "  harden-dnssec-stripped: yes",
            "  qname-minimisation: no",
            "  trust-anchor-signaling: no",
            "  root-key-sentinel: no",
            "  prefetch: no",
            # "test." is a special-use name unbound answers itself unless told otherwise.
            '  local-zone: "test." nodefault',
        ]
        lines += [f'  trust-anchor: "{anchor}"' for anchor in anchors]
        lines += [f'  domain-insecure: "{name}"' for name in insecure]
        lines += ["remote-control:", "  control-enable: no"]
        for name in zones:
            lines += ["stub-zone:", f'  name: "{name}"', f"  stub-addr: 127.0.0.1@{nsd.port}"]
        conf.write_text("\n".join(lines) + "\n")
        proc = subprocess.Popen([UNBOUND, "-d", "-c", str(conf)])
        try:
            _wait_answering(port, proc, f"{next(iter(zones)).rstrip('.')}.", log)
        except BaseException:
            proc.terminate()
            proc.wait(timeout=10)
            raise
    except BaseException:
        nsd.stop()
        raise
    return ValidatingResolver(port, nsd, proc, log)
