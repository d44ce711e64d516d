"""The Python floor (``bench/relay/floor.py``) as a relay under test, started like the others.

It runs from the benchmark's own interpreter (the repository's venv, which has uvloop) in its
own folder and session, so its CPU and memory are those of its process tree, counted the same
way as Postfix's and Edgeward's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from relay.procs import BenchError, free_port, stop_popen, wait_smtp_banner

SCRIPT = Path(__file__).resolve().with_name("floor.py")


class FloorRelay:
    """Start and stop one floor relay relaying to the sink."""

    def __init__(self, workdir: Path, sink_port: int, processes: int = 1) -> None:
        self.name = "floor"
        self.port = free_port()
        self.sink_port = sink_port
        self.processes = processes
        self.dir = workdir / self.name
        self.queue_dir = self.dir / "queue"
        self.log_file = self.dir / "floor.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr = self.dir / "floor.stderr"

    def command(self) -> list[str]:
        return [
            sys.executable,
            str(SCRIPT),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--smart-host",
            f"127.0.0.1:{self.sink_port}",
            "--dir",
            str(self.queue_dir),
            "--log",
            str(self.log_file),
            "--processes",
            str(self.processes),
        ]

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._stderr.open("wb") as err:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd=self.dir,
                start_new_session=True,
            )
        try:
            wait_smtp_banner(self.port, 30.0, self._proc)
        except BenchError as exc:
            raise BenchError(f"floor relay did not come up: {exc}\n{self._log_tail()}") from exc

    @property
    def root_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self._stderr.read_text(errors="replace")[-chars:]
        return ""

    def describe(self) -> dict[str, object]:
        # floor.py takes uvloop when this interpreter can import it.
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        return {
            "version": f"Python {sys.version.split()[0]}",
            "command": self.command(),
            "processes": self.processes,
            "event_loop": loop,
        }

    def stop(self) -> None:
        if self._proc is not None:
            stop_popen(self._proc, 10.0)
            self._proc = None

    def cleanup_files(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
