"""Postfix's ``smtp-sink`` as the common downstream of both relays, with a delivery counter.

``smtp-sink -c`` rewrites a status line (``sess=N quit=N mesg=N``, separated by ``\\r``) each
time a message ends with ".". A reader thread follows that stream and keeps the latest count
and the time it changed, so end-to-end throughput ends at the moment the last message reached
the sink rather than at the moment the benchmark looked.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

from relay.procs import BenchError, free_port, stop_popen, wait_smtp_banner

_MESG = re.compile(rb"mesg=(\d+)")


class Sink:
    """One ``smtp-sink`` process on a free loopback port."""

    def __init__(
        self, workdir: Path, binary: str = "smtp-sink", dump_dir: Path | None = None, name: str = "smtp-sink"
    ) -> None:
        self.port = free_port()
        self._binary = binary
        # With a dump folder smtp-sink writes every message it receives into a file there (-d).
        self.dump_dir = dump_dir
        self._stderr_path = workdir / f"{name}.stderr"
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._count = 0
        self._changed_at = time.monotonic()
        # (count, monotonic time it was first seen), to find when a target count was reached.
        self._history: list[tuple[int, float]] = []

    def start(self) -> None:
        # smtp-sink refuses to keep root privileges: it needs a user to switch to when run as root.
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        dump: list[str] = []
        if self.dump_dir is not None:
            self.dump_dir.mkdir(parents=True, exist_ok=True)
            self.dump_dir.chmod(0o777)  # written by the user smtp-sink switches to
            dump = ["-d", f"{self.dump_dir}/%M."]
        cmd = [self._binary, "-c", *user, *dump, "-h", "sink.bench.test", f"127.0.0.1:{self.port}", "1024"]
        with self._stderr_path.open("wb") as err:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, start_new_session=True
            )
        self._thread = threading.Thread(target=self._follow, name="smtp-sink-counter", daemon=True)
        self._thread.start()
        wait_smtp_banner(self.port, 10.0, self._proc)

    def _follow(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        buf = b""
        while chunk := os.read(self._proc.stdout.fileno(), 65536):
            buf += chunk
            *done, buf = buf.split(b"\r")
            counts = [int(m.group(1)) for part in done if (m := _MESG.search(part))]
            if counts:
                with self._cond:
                    if counts[-1] != self._count:
                        self._count = counts[-1]
                        self._changed_at = time.monotonic()
                        self._history.append((self._count, self._changed_at))
                    self._cond.notify_all()

    @property
    def count(self) -> int:
        with self._cond:
            return self._count

    def wait_for(self, target: int, timeout: float) -> float:
        """Block until ``target`` messages have arrived; return the monotonic time the last one did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count < target:
                left = deadline - time.monotonic()
                if left <= 0 or (self._proc is not None and self._proc.poll() is not None):
                    raise BenchError(
                        f"smtp-sink received {self._count} of {target} messages within {timeout:.0f}s"
                    )
                self._cond.wait(min(left, 0.5))
            return next(t for n, t in self._history if n >= target)

    def wait_quiet(self, quiet: float, timeout: float) -> int:
        """Wait until no message has arrived for ``quiet`` seconds (stray retries); return the count."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while time.monotonic() - self._changed_at < quiet and time.monotonic() < deadline:
                self._cond.wait(0.1)
            return self._count

    def stop(self) -> None:
        if self._proc is not None:
            stop_popen(self._proc, 5.0)
            self._proc = None
