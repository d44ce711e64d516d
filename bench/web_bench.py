"""Cost of the web console's reads: a /metrics scrape, which reads the whole tracking log on
disk, an API search over the quarantine, and a login (one argon2id check).

Writes ``--events`` tracking events and ``--entries`` quarantine entries into a temporary data
folder, then times each request through FastAPI's TestClient (in process: no TLS, no network),
three runs each, and prints the median wall seconds as JSON.

    .venv/bin/python bench/web_bench.py [--events 100000] [--entries 2000]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]
warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")

from fastapi.testclient import TestClient  # noqa: E402

from edgeward.config.schema import Config  # noqa: E402
from edgeward.logs.tracking import TrackingLog  # noqa: E402
from edgeward.quarantine.entry import QuarantineEntry  # noqa: E402
from edgeward.quarantine.service import open_store  # noqa: E402
from edgeward.web.app import create_app  # noqa: E402
from edgeward.web.auth import WebAccounts  # noqa: E402


def median_of(runs: int, call: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = Config.model_validate({
            "server": {"data_dir": tmp, "hostname": "mx.example.test"}, "queue": {"fsync": False},
            "web": {"metrics_allow": ["0.0.0.0/0"]},
        })  # fmt: skip
        (root / "log").mkdir()
        log = TrackingLog(root / "log", config.logging)
        for n in range(args.events):
            log.event("RECEIVE" if n % 3 else "SEND", msg_id=f"m{n}", sender="s@remote.test",
                      recipients=["u@example.test"], client_ip="192.0.2.1", size=2000)  # fmt: skip
        log.close()
        store = open_store(config)
        for n in range(args.entries):
            store.put(QuarantineEntry("", f"s{n}@remote.test", ("u@example.test",), "content-filter",
                                      subject=f"offer {n}"), b"Subject: offer\r\n\r\nbody\r\n")  # fmt: skip
        accounts = WebAccounts(root / "state")
        accounts.add("admin", "a long password", "admin")
        token = accounts.add_token("bench", "readonly")
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(create_app(config), base_url="https://testserver", client=("127.0.0.1", 1)) as client:

            def login() -> None:
                form = client.get("/login").text
                csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
                client.post("/login", data={"name": "admin", "password": "a long password", "csrf": csrf})

            result = {
                "events": args.events,
                "entries": args.entries,
                "metrics_scrape_s": median_of(3, lambda: client.get("/metrics")),
                "api_search_s": median_of(3, lambda: client.get("/api/v1/quarantine", headers=headers,
                                                                params={"sender": "s1999@"})),
                "login_s": median_of(3, login),
            }  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
