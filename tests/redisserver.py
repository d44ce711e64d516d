"""A real Redis server (Debian package ``redis-server``) on a loopback port, for the tests.

``RedisServer(root).start()`` runs ``redis-server`` in the foreground with nothing persisted
(``--save '' --appendonly no``) and its working folder under ``root``, and waits until it
answers PING. ``stop()`` and ``start()`` again keep the port, which is how a test takes Redis
away from a running gateway and brings it back. ``password`` turns on ``requirepass``; ``tls``
(a certificate, key and CA file) serves TLS only on the port.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from tests.ports import free_port

REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    def __init__(
        self,
        root: Path,
        *,
        password: str | None = None,
        tls: tuple[Path, Path, Path] | None = None,
        unix_socket: bool = False,
    ) -> None:
        if REDIS_SERVER is None:
            raise FileNotFoundError("redis-server is not installed (scripts/install-test-deps.sh)")
        self.port = free_port()
        self.dir = root / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.tls = tls
        self.socket = self.dir / "redis.sock" if unix_socket else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.socket is not None:
            return f"unix://{self.socket}"
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def _args(self) -> list[str]:
        assert REDIS_SERVER is not None
        args = [
            REDIS_SERVER, "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if self.tls is not None:
            cert, key, ca = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert)]
            args += ["--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.socket is not None:
            args += ["--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        return args

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self._wait()
        except BaseException:
            self.stop()
            raise
        return self

    def client(self) -> redis.Redis:
        """A plain client of the test's own, to look at what the store wrote."""
        if self.socket is not None:
            return redis.Redis(unix_socket_path=str(self.socket), password=self.password)
        if self.tls is not None:
            return redis.Redis(
                "127.0.0.1", self.port, password=self.password, ssl=True, ssl_ca_certs=str(self.tls[2])
            )
        return redis.Redis("127.0.0.1", self.port, password=self.password)

    def _wait(self) -> None:
        assert self.proc is not None
        for _ in range(400):
            if self.proc.poll() is not None:
                log = self.dir / "redis.log"
                raise RuntimeError(f"redis-server exited: {log.read_text() if log.exists() else ''}")
            try:
                with self.client() as c:
                    if c.ping():
                        return
            except redis.RedisError:
                time.sleep(0.025)  # not listening yet
        raise RuntimeError("redis-server did not answer PING")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
