"""A real clamd (Debian package ``clamav-daemon``) on a private socket with a database built here.

Shared by the tests and the anti-virus benchmark, so both scan against the same database.
``start_clamd(root)`` writes ``clamd.conf`` and a signature database under ``root`` and starts
clamd in the foreground, listening on ``root/clamd.sock`` (and on a loopback TCP port when one
is given), and waits until it answers PING. The official databases cannot be downloaded here,
so clamd starts with custom ones only: a hash signature of the EICAR test file (``.hdb`` MD5
and ``.hsb`` SHA-256), body signatures (``.ndb``) for EICAR inside larger content and for
:data:`TEST_PATTERN`. ``filler`` adds that many made-up hash signatures and a tenth as many
made-up body signatures, derived from a counter so every run builds the same database: a clamd
with three signatures matches nothing like a real one, whose body-signature automaton is what
each scanned byte pays for. ``StreamMaxLength`` is ``stream_max`` (:data:`STREAM_MAX` by
default, small enough for a test to pass it).

clamd runs as the invoking user (no ``User`` line): as root in CI, and every file it needs is in
``root``, which that user owns.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLAMD = shutil.which("clamd") or ("/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists() else None)

# Built from two halves so this file is not itself the EICAR test file to a scanner reading it.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
TEST_PATTERN = b"EDGEWARD-AV-TEST-PATTERN-" + b"5d1c9e"
STREAM_MAX = 1024 * 1024
# clamd appends .UNOFFICIAL to the names of signatures from unsigned (custom) databases.
EICAR_HASH_NAME = "Edgeward-Eicar-Hash"
EICAR_BODY_NAME = "Edgeward-Eicar-Body"
PATTERN_NAME = "Edgeward-Test-Pattern"


@dataclass
class Clamd:
    root: Path
    socket: Path
    port: int | None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Clamd:
        assert CLAMD is not None
        log = (self.root / "clamd.out").open("ab")
        self.proc = subprocess.Popen(
            [CLAMD, "--config-file", str(self.root / "clamd.conf")], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_ping(self.socket, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)  # a frozen clamd cannot act on SIGTERM
                self.proc.terminate()
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            self.proc = None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


def ping(path: Path, timeout: float = 1.0) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(b"zPING\0")
            return s.recv(16).startswith(b"PONG")
    except OSError:
        return False


def wait_ping(path: Path, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"clamd exited with {proc.returncode}; see {path.parent / 'clamd.out'}")
        if ping(path):
            return
        time.sleep(0.1)
    raise RuntimeError(f"clamd did not answer PING on {path}")


def write_database(db: Path, filler: int = 0) -> int:
    """Write the database into ``db``; return how many signatures it holds."""
    db.mkdir(parents=True, exist_ok=True)
    hashes = [f"{hashlib.md5(EICAR, usedforsecurity=False).hexdigest()}:{len(EICAR)}:{EICAR_HASH_NAME}"]
    bodies = [f"{EICAR_BODY_NAME}:0:*:{EICAR.hex()}", f"{PATTERN_NAME}:0:*:{TEST_PATTERN.hex()}"]
    for n in range(filler):
        digest = hashlib.sha256(f"edgeward-filler-{n}".encode()).digest()
        # Sizes no real item of the tests has, so a filler hash never matches by accident.
        hashes.append(f"{digest[:16].hex()}:{1_000_003 + n}:Edgeward-Filler-Hash-{n}")
        if n % 10 == 0:
            bodies.append(f"Edgeward-Filler-Body-{n}:0:*:{digest[16:32].hex()}")
    (db / "edgeward.hdb").write_text("\n".join(hashes) + "\n")
    (db / "edgeward.hsb").write_text(f"{hashlib.sha256(EICAR).hexdigest()}:{len(EICAR)}:{EICAR_HASH_NAME}\n")
    (db / "edgeward.ndb").write_text("\n".join(bodies) + "\n")
    return len(hashes) + 1 + len(bodies)


def start_clamd(
    root: Path,
    *,
    shared: bool = False,
    port: int | None = None,
    filler: int = 0,
    stream_max: int = STREAM_MAX,
    threads: int | None = None,
) -> Clamd:
    """clamd serving ``root/clamd.sock`` (and 127.0.0.1:``port`` if given); the caller stops it.

    ``shared`` opens the socket to every local user (``LocalSocketMode 666`` in a folder others
    may enter), for a gateway or an amavisd that runs as its unprivileged service user; in
    production the service user joins clamd's socket group instead (``LocalSocketGroup``)."""
    if CLAMD is None:
        raise FileNotFoundError("clamd is not installed (apt-get install -y clamav-daemon)")
    root.mkdir(parents=True, exist_ok=True)
    write_database(root / "db", filler)
    (root / "tmp").mkdir(exist_ok=True)
    sock = root / "clamd.sock"
    tcp = [f"TCPSocket {port}", "TCPAddr 127.0.0.1"] if port is not None else []
    (root / "clamd.conf").write_text(
        "\n".join([
            f"LocalSocket {sock}",
            f"LocalSocketMode {'666' if shared else '600'}",
            *tcp,
            "Foreground yes",
            f"DatabaseDirectory {root / 'db'}",
            f"TemporaryDirectory {root / 'tmp'}",
            f"LogFile {root / 'clamd.log'}",
            f"PidFile {root / 'clamd.pid'}",
            f"StreamMaxLength {stream_max}",
            *([f"MaxThreads {threads}"] if threads else []),
            # A limit reached inside an archive is a finding, not a silent OK (as production should).
            "AlertExceedsMax yes",
            # No self-check and no reload surprises during a test.
            "SelfCheck 0",
            "",
        ])
    )  # fmt: skip
    os.chmod(root, 0o755 if shared else 0o700)
    return Clamd(root, sock, port).start()
