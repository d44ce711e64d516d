"""amavisd-new under test: a private instance with its own configuration, folders and port.

Nothing of the system's amavis is used: ``amavisd -c CONF foreground`` reads only the file
written here (not ``/etc/amavis/conf.d``), keeps its home, temporary, database and pid files
under the benchmark's folder, listens on its own loopback port and drops root to the
``amavis`` user the Debian package creates (``$daemon_user``), as the packaged service does.

Set up as a mail administrator would for virus scanning alone:

- clamd through the shared socket (``@av_scanners``: Debian's ``ClamAV-clamd`` entry with
  ``CONTSCAN``; clamd reads the parts amavis decoded into its temporary folder);
- spam checks off (``@bypass_spam_checks_maps = (1)``), DKIM off, no SQL or Redis;
- the decoders amavis ships (``@decoders`` at its defaults: zip, gz, bz2, 7z, arj, cab, tnef
  ...), which unpack archives to disk for clamd, and its banned-file checks at their defaults;
- an infected message is refused at end of data (``$final_virus_destiny = D_REJECT``, 554
  5.7.0), as Edgeward does, with no notices to anyone; clean mail gets ``X-Virus-Scanned``;
- amavis forwards to the sink (``$forward_method``) before it answers ``250``: it has no queue
  of its own (in production Postfix in front keeps the message until then);
- ``$max_servers`` child processes, one per parallel session of the benchmark.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from relay.procs import BenchError, cpu_seconds, free_port, stop_popen, wait_smtp_banner

AMAVISD = shutil.which("amavisd") or shutil.which("amavisd-new") or "/usr/sbin/amavisd"
USER = "amavis"
SCAN_HEADER = "X-Virus-Scanned"


class AmavisStack:
    name = "amavis"

    def __init__(self, workdir: Path, sink_port: int, clamd_socket: Path, children: int) -> None:
        self.port = free_port()
        self.dir = workdir / "amavis"
        self.config_file = self.dir / "amavisd.conf"
        self.sink_port = sink_port
        self.clamd_socket = clamd_socket
        self.children = children
        self._proc: subprocess.Popen[bytes] | None = None

    def config_text(self) -> str:
        home = self.dir / "home"
        return f"""# amavisd-new for the anti-virus benchmark (bench/avstack/amavis_stack.py).
use strict;
$MYHOME = '{home}';
$TEMPBASE = "$MYHOME/tmp";
$ENV{{TMPDIR}} = $TEMPBASE;
$db_home = "$MYHOME/db";
$helpers_home = "$MYHOME/var";
$lock_file = "$MYHOME/var/amavisd.lock";
$pid_file = "$MYHOME/var/amavisd.pid";
$QUARANTINEDIR = "$MYHOME/quarantine";
$daemon_user = '{USER}';
$daemon_group = '{USER}';
$mydomain = 'bench.test';
$myhostname = 'amavis.bench.test';
@local_domains_maps = (['.bench.test']);
@mynetworks = qw(127.0.0.0/8);

$max_servers = {self.children};
$max_requests = 10000;
$child_timeout = 300;
$inet_socket_bind = '127.0.0.1';
$inet_socket_port = {self.port};
@inet_acl = qw(127.0.0.1);
$protocol = 'SMTP';
$forward_method = 'smtp:[127.0.0.1]:{self.sink_port}';
$notify_method = $forward_method;

$do_syslog = 0;
$LOGFILE = "$MYHOME/amavis.log";
$log_level = 0;
$enable_db = 0;
$enable_zmq = 0;
$enable_dkim_verification = 0;
$enable_dkim_signing = 0;
$nanny_details_level = 0;

@bypass_spam_checks_maps = (1);
@bypass_virus_checks_maps = (0);
$final_virus_destiny = D_REJECT;
$final_banned_destiny = D_REJECT;
$final_spam_destiny = D_PASS;
$final_bad_header_destiny = D_PASS;
$virus_quarantine_to = undef;
$banned_quarantine_to = undef;
$virus_admin = undef;
$warnvirussender = 0;
$warnvirusrecip = 0;
$warnbannedsender = 0;
$warnbannedrecip = 0;
$X_HEADER_TAG = '{SCAN_HEADER}';
$X_HEADER_LINE = "amavisd-new at $mydomain";

@av_scanners = (
  ['ClamAV-clamd',
    \\&ask_daemon, ["CONTSCAN {{}}\\n", "{self.clamd_socket}"],
    qr/\\bOK$/m, qr/\\bFOUND$/m,
    qr/^.*?: (?!Infected Archive)(.*) FOUND$/m ],
);
@av_scanners_backup = ();
1;
"""

    def setup(self) -> None:
        if not Path(AMAVISD).exists():
            raise BenchError("amavisd-new is not installed: run scripts/install-bench-deps.sh")
        try:
            user = pwd.getpwnam(USER)
        except KeyError as exc:
            raise BenchError(f"user {USER} missing (the amavisd-new package creates it)") from exc
        # amavisd refuses a configuration its own user could change: the file and its folder
        # stay root's, the home below it is amavis's.
        self.dir.mkdir(parents=True, exist_ok=True)
        for d in (self.dir, self.dir.parent):
            d.chmod(0o755)
        for sub in ("", "tmp", "db", "var", "quarantine"):
            (self.dir / "home" / sub).mkdir(parents=True, exist_ok=True)
            os.chown(self.dir / "home" / sub, user.pw_uid, user.pw_gid)
        self.config_file.write_text(self.config_text())

    def start(self) -> None:
        self.setup()
        with (self.dir / "amavisd.stdout").open("wb") as out:
            self._proc = subprocess.Popen(
                [AMAVISD, "-c", str(self.config_file), "foreground"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.dir, start_new_session=True,
            )  # fmt: skip
        try:
            wait_smtp_banner(self.port, 120.0, self._proc)
        except BenchError as exc:
            raise BenchError(f"amavisd did not come up: {exc}\n{self.log_tail()}") from exc

    def log_tail(self, chars: int = 3000) -> str:
        text = ""
        for name in ("amavisd.stdout", "home/amavis.log"):
            with contextlib.suppress(OSError):
                text += (self.dir / name).read_text(errors="replace")
        return text[-chars:]

    @property
    def root_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def cpu_seconds(self) -> float:
        """The master and its children (and the decoders they ran and reaped)."""
        return cpu_seconds(self.root_pid) if self.root_pid else 0.0

    def describe(self) -> dict[str, object]:
        version = subprocess.run([AMAVISD, "-V"], capture_output=True, text=True, timeout=60, check=False)
        return {
            "version": next(iter((version.stdout or version.stderr).strip().splitlines()), "unknown"),
            "command": [AMAVISD, "-c", str(self.config_file), "foreground"],
            "config": self.config_text(),
        }

    def stop(self) -> None:
        if self._proc is not None:
            stop_popen(self._proc, 30.0)
            self._proc = None
