"""A private Postfix instance that relays everything from loopback to the sink.

The instance has its own ``config_directory``, ``queue_directory`` and ``data_directory``
under the benchmark's work folder, so it neither needs nor touches the system's Postfix in
/etc/postfix (which may not even be configured) and several can run one after another.

It is configured as Edgeward is for the benchmark: accept on 127.0.0.1 only, relay for
127.0.0.0/8 only, no local delivery, no DNS, no TLS, one smart host (the sink). Everything
else keeps Postfix's defaults, in particular its durable queue: cleanup(8) fsyncs the queue
file before smtpd(8) replies 250 to the end of DATA, and ``in_flow_delay`` (1s) still throttles
clients when delivery falls behind. No service runs chrooted, because the chroot would need
copies of system files that a private instance does not set up.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from relay.procs import BenchError, free_port, group_alive, kill_group, kill_processes_in, wait_smtp_banner

# master.cf: the services a relay-only instance needs, chroot "n" throughout. The smtpd line
# is added with the chosen port. Limits ("-") mean default_process_limit.
_MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixRelay:
    """Set up, start and stop one private Postfix instance."""

    name = "postfix"

    def __init__(self, workdir: Path, sink_port: int, process_limit: int = 100) -> None:
        self.port = free_port()
        self.dir = workdir / "postfix"
        self.config_dir = self.dir / "etc"
        self.queue_dir = self.dir / "spool"
        self.data_dir = self.dir / "data"
        self.log_file = self.dir / "maillog"
        self.sink_port = sink_port
        self.process_limit = process_limit
        self._master_pid: int | None = None

    def main_cf(self) -> dict[str, str]:
        """The main.cf settings; written out in full so nothing comes from /etc/postfix/main.cf."""
        return {
            "compatibility_level": "3.6",
            "config_directory": str(self.config_dir),
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "postfix.bench.test",
            "mydomain": "bench.test",
            "myorigin": "bench.test",
            # Nothing is local: every recipient goes to the relayhost.
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relay_domains": "",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "relayhost": f"[127.0.0.1]:{self.sink_port}",
            # No DNS: the next hop is an address literal and host names come from /etc/hosts.
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "smtpd_banner": "$myhostname ESMTP",
            "default_process_limit": str(self.process_limit),
            # Without syslog in a container, log through postlogd into a file of the work folder.
            "maillog_file": str(self.log_file),
        }

    def master_cf(self) -> str:
        """master.cf: the smtpd listener on the chosen port, then the relay-only services."""
        return f"127.0.0.1:{self.port} inet n       -       n       -       -       smtpd\n" + _MASTER_CF

    def setup(self) -> None:
        for d in (self.config_dir, self.queue_dir, self.data_dir):
            d.mkdir(parents=True, exist_ok=True)
        # Postfix daemons run as mail_owner and must traverse the work folder.
        for d in (self.dir, self.dir.parent):
            d.chmod(0o755)
        pw = pwd.getpwnam("postfix")
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        main = "".join(f"{k} = {v}\n" for k, v in self.main_cf().items())
        (self.config_dir / "main.cf").write_text(main)
        (self.config_dir / "master.cf").write_text(self.master_cf())
        check = self._postfix("check")
        if check.returncode != 0:
            raise BenchError(f"postfix check failed: {check.stdout}{check.stderr}")

    def _postfix(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["postfix", "-c", str(self.config_dir), command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self) -> None:
        self.setup()
        started = self._postfix("start")
        if started.returncode != 0:
            raise BenchError(f"postfix start failed: {started.stdout}{started.stderr}{self._log_tail()}")
        self._master_pid = self._read_master_pid()
        try:
            wait_smtp_banner(self.port, 30.0)
        except BenchError as exc:
            raise BenchError(f"{exc}\n{self._log_tail()}") from exc

    def _read_master_pid(self) -> int:
        pid_file = self.queue_dir / "pid" / "master.pid"
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                return int(pid_file.read_text().strip())
            time.sleep(0.05)
        raise BenchError(f"postfix master wrote no {pid_file}")

    @property
    def root_pid(self) -> int | None:
        return self._master_pid

    def _log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def describe(self) -> dict[str, object]:
        return {
            "version": _postconf_value("mail_version"),
            "main_cf": self.main_cf(),
            "master_cf_smtpd": f"127.0.0.1:{self.port} inet n - n - - smtpd",
            "default_process_limit": self.process_limit,
        }

    def stop(self) -> None:
        """``postfix stop`` (graceful), then kill the master's process group if it lingers."""
        pid = self._master_pid
        if pid is None:
            # Interrupted during start: the master may be up without our having read its pid.
            with contextlib.suppress(OSError, ValueError):
                pid = int((self.queue_dir / "pid" / "master.pid").read_text().strip())
        if (self.config_dir / "main.cf").exists():
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self._postfix("stop")
        # master setsid()s when it daemonises, so its pid is also its process group id.
        if pid is not None and group_alive(pid):
            kill_group(pid, 5.0, signal.SIGTERM)
        kill_processes_in(self.dir)
        self._master_pid = None

    def cleanup_files(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _postconf_value(name: str) -> str:
    out = subprocess.run(["postconf", "-d", "-h", name], capture_output=True, text=True, check=False)
    return out.stdout.strip()
