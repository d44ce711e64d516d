"""The peer: Postfix with postscreen, policyd-spf, OpenDKIM and OpenDMARC, all Debian packages.

The private instance of ``relay.postfix`` (own config, queue and data directories, delivery to
the sink, durable queue) with the anti-spam front a Postfix site typically runs:

- postscreen(8) on the listening port: pregreet test (``postscreen_greet_action = enforce``)
  and both benchmark DNSBLs (``postscreen_dnsbl_action = enforce``), with its pass cache as
  shipped, then hand-off of the connection to smtpd;
- ``check_policy_service`` to postfix-policyd-spf-python, run by spawn(8), rejecting SPF fail
  (its default ``Mail_From_reject = Fail``) and prepending ``Received-SPF``;
- OpenDKIM (verify only) and OpenDMARC (``RejectFailures``) as smtpd milters, each started here
  in the foreground with its own configuration; a milter that fails makes smtpd answer 451
  (``milter_default_action = tempfail``), so unchecked mail is never accepted.

The only clients in ``mynetworks`` are the relay itself (127.0.0.1); the load comes from other
loopback addresses, so every check applies to it.
"""

from __future__ import annotations

import contextlib
import pwd
import socket
import subprocess
import time
from pathlib import Path

from relay.postfix import _MASTER_CF, PostfixRelay
from relay.procs import BenchError, cpu_seconds, free_port, stop_popen

from antispam.dns import DNSBL_ZONES, RESOLVER_ADDRESS

AUTHSERV_ID = "postfix.bench.test"
POLICYD_SPF = "/usr/bin/policyd-spf"
OPENDKIM = "/usr/sbin/opendkim"
OPENDMARC = "/usr/sbin/opendmarc"
GREET_WAIT = "1s"


class PostfixStack(PostfixRelay):
    """Postfix + postscreen + policyd-spf + OpenDKIM + OpenDMARC, started and stopped together."""

    name = "postfix"

    def __init__(self, workdir: Path, sink_port: int) -> None:
        super().__init__(workdir, sink_port)
        self.dkim_port = free_port()
        self.dmarc_port = free_port()
        self.milter_dir = self.dir / "milters"
        self._milters: dict[str, subprocess.Popen[bytes]] = {}

    def main_cf(self) -> dict[str, str]:
        cf = super().main_cf()
        cf.update(
            {
                "mynetworks": "127.0.0.1/32",
                # Mail for bench.test is relayed to the sink (relayhost), like an edge's inbound.
                "relay_domains": "bench.test",
                "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
                "smtpd_recipient_restrictions": "check_policy_service unix:private/policyd-spf",
                "policyd-spf_time_limit": "3600",
                "smtpd_milters": f"inet:127.0.0.1:{self.dkim_port}, inet:127.0.0.1:{self.dmarc_port}",
                "milter_default_action": "tempfail",
                "postscreen_access_list": "permit_mynetworks",
                "postscreen_greet_action": "enforce",
                "postscreen_greet_wait": GREET_WAIT,
                "postscreen_dnsbl_sites": ", ".join(f"{z}*1" for z in DNSBL_ZONES),
                "postscreen_dnsbl_threshold": "1",
                "postscreen_dnsbl_action": "enforce",
            }
        )
        return cf

    def master_cf(self) -> str:
        # postscreen owns the port; smtpd gets the connections it passes ("pass" service).
        return (
            f"127.0.0.1:{self.port} inet n - n - 1 postscreen\n"
            "smtpd     pass  -       -       n       -       -       smtpd\n"
            "dnsblog   unix  -       -       n       -       0       dnsblog\n"
            "tlsproxy  unix  -       -       n       -       0       tlsproxy\n"
            "policyd-spf unix -      n       n       -       0       spawn\n"
            f"  user=policyd-spf argv={POLICYD_SPF} {self.milter_dir / 'policyd-spf.conf'}\n"
        ) + _MASTER_CF

    def _write_milter_configs(self) -> None:
        self.milter_dir.mkdir(parents=True, exist_ok=True)
        self.milter_dir.chmod(0o755)
        (self.milter_dir / "policyd-spf.conf").write_text(
            # Defaults of the Debian package, except that only the relay itself is skipped
            # (the package skips all of 127.0.0.0/8, where the benchmark's clients live).
            "debugLevel = 1\nTestOnly = 1\nHELO_reject = Fail\nMail_From_reject = Fail\n"
            "PermError_reject = False\nTempError_Defer = False\nskip_addresses = 127.0.0.1/32\n"
        )
        (self.milter_dir / "opendkim.conf").write_text(
            "Syslog no\nMode v\n"
            f"Socket inet:{self.dkim_port}@127.0.0.1\n"
            "UserID opendkim\n"
            f"AuthservID {AUTHSERV_ID}\n"
            "AlwaysAddARHeader yes\n"
            # OpenDKIM resolves with libunbound, which would recurse from the root itself, and
            # never asks a loopback server (its do-not-query-localhost default; a
            # ResolverConfiguration file to change that crashed OpenDKIM's config parser under
            # load), so it asks the namespace's resolver on its non-loopback address.
            f"Nameservers {RESOLVER_ADDRESS}\n"
        )
        (self.milter_dir / "opendmarc.conf").write_text(
            "Syslog false\n"
            f"Socket inet:{self.dmarc_port}@127.0.0.1\n"
            "UserID opendmarc\n"
            f"AuthservID {AUTHSERV_ID}\n"
            # Trust OpenDKIM's and policyd-spf's results stamped under our name.
            f"TrustedAuthservIDs {AUTHSERV_ID}\n"
            "RejectFailures true\n"
            "SPFIgnoreResults false\n"
            "SPFSelfValidate true\n"
        )

    def _start_milter(self, name: str, cmd: list[str], port: int) -> None:
        log = (self.milter_dir / f"{name}.log").open("wb")
        try:
            self._milters[name] = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            if self._milters[name].poll() is not None:
                text = (self.milter_dir / f"{name}.log").read_text(errors="replace")
                raise BenchError(f"{name} exited with {self._milters[name].returncode}: {text[-1500:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
            time.sleep(0.05)
        raise BenchError(f"{name} did not listen on 127.0.0.1:{port}")

    def start(self) -> None:
        for binary in (POLICYD_SPF, OPENDKIM, OPENDMARC):
            if not Path(binary).exists():
                raise BenchError(f"{binary} is missing: run scripts/install-bench-deps.sh")
        pwd.getpwnam("policyd-spf")
        self._write_milter_configs()
        self._start_milter(
            "opendkim", [OPENDKIM, "-f", "-x", str(self.milter_dir / "opendkim.conf")], self.dkim_port
        )
        self._start_milter(
            "opendmarc", [OPENDMARC, "-f", "-c", str(self.milter_dir / "opendmarc.conf")], self.dmarc_port
        )
        super().start()

    def cpu_seconds(self) -> float:
        """Postfix's master and everything below it (postscreen, smtpd, cleanup, policyd-spf ...)
        plus both milters."""
        total = cpu_seconds(self.root_pid) if self.root_pid else 0.0
        return total + sum(cpu_seconds(p.pid) for p in self._milters.values())

    def pids(self) -> list[int]:
        """The roots of the stack's process trees: master and both milters."""
        return [p for p in (self.root_pid, *(m.pid for m in self._milters.values())) if p]

    def describe(self) -> dict[str, object]:
        out = super().describe()
        out["master_cf"] = self.master_cf()
        for name in ("policyd-spf", "opendkim", "opendmarc"):
            with contextlib.suppress(OSError):
                out[f"{name}_conf"] = (self.milter_dir / f"{name}.conf").read_text()
        return out

    def stop(self) -> None:
        super().stop()
        for proc in self._milters.values():
            stop_popen(proc, 10.0)
        self._milters.clear()
