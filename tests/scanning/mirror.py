"""A signature mirror on loopback: ``http.server`` in a thread serving a folder the test fills.

freshclam asks it for custom databases (``DatabaseCustomURL``) with ``If-Modified-Since``,
which ``SimpleHTTPRequestHandler`` answers (304 when the file is not newer), so a test can
serve an unchanged, a newer and an older database just by setting file times.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.ports import free_port


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


class Mirror:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_Quiet, directory=str(folder))
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.server.requests = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, name="mirror", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def requests(self) -> list[str]:
        return list(self.server.requests)  # type: ignore[attr-defined]

    def publish(self, name: str, text: str, *, age: float = 5.0) -> None:
        """Serve ``text`` as ``name``, dated ``age`` seconds ago: older than the copy freshclam
        writes when it fetches it (so the next round gets 304 Not Modified); a negative age
        dates it in the future, newer than any copy already fetched."""
        path = self.folder / name
        path.write_text(text)
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
