"""A real HTTPS server on loopback that serves MTA-STS policies (RFC 8461 §3.3) for tests.

``PolicyHost(port, ca, policies)`` serves ``policies[domain]`` at
``https://mta-sts.<domain>/.well-known/mta-sts.txt`` with a certificate from the test CA ``ca``
naming every ``mta-sts.<domain>``; the Host header picks the policy. ``close()`` stops it.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import trustme


def enforce(*mx: str, mode: str = "enforce") -> str:
    lines = "".join(f"mx: {m}\n" for m in mx)
    return f"version: STSv1\nmode: {mode}\n{lines}max_age: 86400\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        domain = self.headers.get("Host", "").rsplit(":", 1)[0].removeprefix("mta-sts.")
        policy = self.server.policies.get(domain)
        if policy is None or self.path != "/.well-known/mta-sts.txt":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = policy.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    policies: Mapping[str, str]


class PolicyHost:
    def __init__(self, port: int, ca: trustme.CA, policies: Mapping[str, str]) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*(f"mta-sts.{d}" for d in policies)).configure_cert(context)
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.policies = dict(policies)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
