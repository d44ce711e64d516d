"""Cost of the console's accounts features: an audit search over a large audit log (the log is
scanned whole on every read), an end user's quarantine page (the scope filters every entry
before paging), and a TOTP check.

Writes ``--lines`` audit lines and ``--entries`` quarantine entries (a tenth of them for the
end user) into a temporary data folder, then times each call in process, three runs each, and
prints the median wall seconds as JSON.

    .venv/bin/python bench/audit_bench.py [--lines 100000] [--entries 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]
warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")

from fastapi.testclient import TestClient  # noqa: E402

from edgeward.config.schema import Config  # noqa: E402
from edgeward.logs.audit import Actor, AuditQuery, audit, read_audit  # noqa: E402
from edgeward.quarantine.entry import QuarantineEntry  # noqa: E402
from edgeward.quarantine.service import open_store  # noqa: E402
from edgeward.web.app import create_app  # noqa: E402
from edgeward.web.auth import WebAccounts  # noqa: E402
from edgeward.web.totp import verify_step  # noqa: E402


def median_of(runs: int, call: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Config.model_validate({
            "server": {"data_dir": tmp, "hostname": "mx.example.test"}, "queue": {"fsync": False},
        })  # fmt: skip
        start = time.perf_counter()
        for n in range(args.lines):
            audit(config, "login" if n % 4 else "message.release", target=f"q{n}",
                  actor=Actor(f"admin{n % 7}", "web", "192.0.2.1"))  # fmt: skip
        write = (time.perf_counter() - start) / max(args.lines, 1)
        store = open_store(config)
        for n in range(args.entries):
            rcpt = "mine@example.test" if n % 10 == 0 else f"u{n}@example.test"
            store.put(QuarantineEntry("", "s@remote.test", (rcpt,), "content-filter", subject=f"m{n}"),
                      b"Subject: x\r\n\r\nbody\r\n")  # fmt: skip
        accounts = WebAccounts(config.resolve(Path("state")))
        accounts.add("me", "a user password", "user")
        accounts.endusers.add_addresses("me", ["mine@example.test"])
        with TestClient(create_app(config), base_url="https://testserver") as client:
            form = client.get("/login").text
            csrf = form.split('name="csrf" value="')[1].split('"')[0]
            client.post("/login", data={"name": "me", "password": "a user password", "csrf": csrf})
            page = median_of(3, lambda: client.get("/quarantine"))
        key = b"12345678901234567890"
        results = {
            "audit_write_seconds_per_line": round(write, 6),
            f"audit_search_{args.lines}_lines_seconds": round(
                median_of(3, lambda: read_audit(config, AuditQuery(actor="admin3", action="message"))), 3
            ),
            f"enduser_quarantine_page_{args.entries}_entries_seconds": round(page, 3),
            "totp_check_seconds": round(median_of(3, lambda: verify_step(key, "123456", time.time(), -1)), 6),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
