"""Edgeward as the relay under test: ``edgeward init`` a fresh folder, then ``edgeward serve``.

The configuration is what ``init`` writes for a loopback relay to one smart host (the sink),
with everything else at its defaults; in particular ``[queue] fsync`` stays on, so a message is
on disk before the 250 reply to its DATA, as in Postfix. The benchmark refuses to run if the
generated configuration turns fsync off.

``EdgewardRelay(..., content_filter=False)`` is the same with ``[agents.content_filter] enabled =
false``, run as a third relay (``edgeward-nocf``) so the classifier's share of the cost shows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from relay.procs import BenchError, free_port, stop_popen, wait_smtp_banner

REPO = Path(__file__).resolve().parents[2]


def default_command() -> list[str]:
    """The repository's venv entry point if present, else ``python -m edgeward``."""
    script = REPO / ".venv" / "bin" / "edgeward"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "edgeward"]


class EdgewardRelay:
    """Initialise, start and stop one Edgeward instance in its own folder."""

    def __init__(
        self,
        workdir: Path,
        sink_port: int,
        command: list[str] | None = None,
        *,
        content_filter: bool = True,
        server: dict[str, str] | None = None,
        disabled: tuple[str, ...] = (),
    ) -> None:
        self.name = "edgeward" if content_filter else "edgeward-nocf"
        self.content_filter = content_filter
        self.disabled = disabled  # agents turned off ([agents] disabled), to show what they cost
        self.server = server or {}  # [server] settings over init's (receivers, event_loop)
        self.port = free_port()
        self.dir = workdir / self.name
        self.config_file = self.dir / "edgeward.toml"
        self.sink_port = sink_port
        self.command = command or default_command()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdout = self.dir / "serve.stdout"
        self._stderr = self.dir / "serve.stderr"

    def init_args(self) -> list[str]:
        return [
            "init",
            "--dir",
            str(self.dir),
            "--hostname",
            "bench.test",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--accept-domain",
            "bench.test",
            "--relay-from",
            "127.0.0.0/8",
            "--smart-host",
            f"127.0.0.1:{self.sink_port}",
        ]

    def setup(self) -> None:
        self.dir.parent.chmod(0o755)
        done = subprocess.run(
            [*self.command, *self.init_args()], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise BenchError(
                f"edgeward init failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}"
            )
        if not self.config_file.is_file():
            raise BenchError(f"edgeward init wrote no {self.config_file}")
        # SPF and DMARC would ask the host's resolver about the benchmark's made-up domains for
        # every message; the DNS-dependent agents are measured with a local DNS server instead.
        text = self.config_file.read_text()
        for key, value in self.server.items():
            toml_value = value if value.isdigit() else f'"{value}"'
            text = text.replace("[server]\n", f"[server]\n{key} = {toml_value}\n", 1)
        self.config_file.write_text(
            text
            + "\n[spf]\nenabled = false\n\n[dmarc]\nenabled = false\n"
            + (f"\n[agents]\ndisabled = {list(self.disabled)!r}\n".replace("'", '"') if self.disabled else "")
            + ("" if self.content_filter else "\n[agents.content_filter]\nenabled = false\n")
        )
        with self.config_file.open("rb") as f:
            config = tomllib.load(f)
        if config.get("queue", {}).get("fsync", True) is not True:
            raise BenchError("the generated configuration turns [queue] fsync off; the benchmark needs it on")

    def start(self) -> None:
        self.setup()
        with self._stdout.open("wb") as out, self._stderr.open("wb") as err:
            self._proc = subprocess.Popen(
                [*self.command, "serve", "--config", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.dir,
                start_new_session=True,
            )
        try:
            wait_smtp_banner(self.port, 60.0, self._proc)
        except BenchError as exc:
            raise BenchError(f"edgeward serve did not come up: {exc}\n{self._log_tail()}") from exc

    @property
    def root_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _log_tail(self, chars: int = 3000) -> str:
        text = ""
        for path in (self._stdout, self._stderr):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return text[-chars:]

    def describe(self) -> dict[str, object]:
        version = subprocess.run(
            [*self.command, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
        config = ""
        with contextlib.suppress(OSError):
            config = self.config_file.read_text()
        return {
            "version": version.stdout.strip() if version.returncode == 0 else "unknown",
            "command": self.command,
            "init_args": self.init_args(),
            "config": config,
        }

    def stop(self) -> None:
        """SIGTERM (Edgeward drains within server.shutdown_grace, 30s by default), then SIGKILL."""
        if self._proc is not None:
            stop_popen(self._proc, 40.0)
            self._proc = None

    def cleanup_files(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
