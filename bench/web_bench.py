"""Cost of the web console's reads: the dashboard and /api/v1/stats over the tracking log, a
/metrics scrape, an API search over the quarantine, and a login (one argon2id check).

Writes ``--events`` tracking events (two thirds RECEIVE with an SCL finding, a tenth of those
REJECT with an AV finding, the rest SEND in the delivery file; spread over the past week) and
``--entries`` quarantine entries into a temporary data folder, then times each request through
FastAPI's TestClient (in process: no TLS, no network), three runs each, and prints the median
wall seconds as JSON.
``*_first_s`` is a console's first call (it reads every line on disk), ``*_after_100_s`` a
later call after 100 more events were written (it reads those only), ``full_reread_s`` what
one pass over every line costs (what each scrape cost before the incremental reader), and
``reader_first_s`` the incremental reader's first pass alone, without HTTP.

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
from edgeward.logs.rotating import read_entries  # noqa: E402
from edgeward.logs.stats import TrackingStats  # noqa: E402
from edgeward.logs.tracking import ADMIN_LOG_NAME, DELIVERY_LOG_NAME, LOG_NAME, TrackingLog  # noqa: E402
from edgeward.quarantine.entry import QuarantineEntry  # noqa: E402
from edgeward.quarantine.service import open_store  # noqa: E402
from edgeward.testing.clock import FakeClock  # noqa: E402
from edgeward.types import Finding  # noqa: E402
from edgeward.web.app import create_app  # noqa: E402
from edgeward.web.auth import WebAccounts  # noqa: E402


def median_of(runs: int, call: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


AV = Finding("AV_INFECTED", "antivirus", "engine=clamd signature=Eicar-Test-Signature path=/1/eicar.com")


def write_events(
    log: TrackingLog,
    delivery: TrackingLog,
    count: int,
    start: int = 0,
    clock: FakeClock | None = None,
    step: float = 0,
) -> None:
    for n in range(start, start + count):
        if clock is not None:
            clock.advance(step)
        if n % 3 == 0:
            delivery.event("SEND", msg_id=f"m{n}", sender="s@remote.test", recipients=["u@example.test"],
                           client_ip="192.0.2.1", size=2000, next_hop="mx.example.test")  # fmt: skip
        elif n % 10 == 1:
            log.event("REJECT", msg_id=f"m{n}", sender=f"s@d{n % 50}.test", recipients=["u@example.test"],
                      client_ip=f"192.0.2.{n % 200}", detail="at EOD", findings=[AV],
                      decided_by="agent antivirus")  # fmt: skip
        else:
            log.event("RECEIVE", msg_id=f"m{n}", sender=f"s@d{n % 50}.test", recipients=["u@example.test"],
                      client_ip=f"192.0.2.{n % 200}", size=2000,
                      findings=[Finding(f"SCL_{n % 10}", "content", "p=0.5", n % 10)],
                      decided_by="no threshold")  # fmt: skip


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
        folder = root / "log"
        folder.mkdir()
        # Spread over the week the dashboard shows, so its buckets are all in use.
        clock = FakeClock(time.time() - 7 * 86400)
        log = TrackingLog(folder, config.logging, clock=clock)
        delivery = TrackingLog(folder, config.logging, clock=clock, name=DELIVERY_LOG_NAME)
        write_events(log, delivery, args.events, clock=clock, step=7 * 86400 / args.events)
        written = args.events
        store = open_store(config)
        for n in range(args.entries):
            store.put(QuarantineEntry("", f"s{n}@remote.test", ("u@example.test",), "content-filter",
                                      subject=f"offer {n}"), b"Subject: offer\r\n\r\nbody\r\n")  # fmt: skip
        accounts = WebAccounts(root / "state")
        accounts.add("admin", "a long password", "admin")
        token = accounts.add_token("bench", "readonly")
        headers = {"Authorization": f"Bearer {token}"}

        def more() -> None:
            nonlocal written
            clock.set(time.time())
            write_events(log, delivery, 100, written)
            written += 100

        def first(path: str, **kw: object) -> float:
            """Median of three fresh consoles' first call (setting one up is not timed)."""
            times = []
            for _ in range(3):
                with TestClient(
                    create_app(config), base_url="https://testserver", client=("127.0.0.1", 1)
                ) as c:
                    start = time.perf_counter()
                    c.get(path, **kw)  # type: ignore[arg-type]
                    times.append(time.perf_counter() - start)
            return statistics.median(times)

        def after_100(client: TestClient, path: str, **kw: object) -> float:
            times = []
            for _ in range(3):
                more()
                start = time.perf_counter()
                client.get(path, **kw)  # type: ignore[arg-type]
                times.append(time.perf_counter() - start)
            return statistics.median(times)

        def reread() -> None:
            for name in (LOG_NAME, DELIVERY_LOG_NAME, ADMIN_LOG_NAME):
                for _ in read_entries(folder, name):
                    pass

        week = {"params": {"window": "week"}, "headers": headers}
        result: dict[str, object] = {"events": args.events, "entries": args.entries,
                                     "full_reread_s": median_of(3, reread)}  # fmt: skip
        result["reader_first_s"] = median_of(3, lambda: TrackingStats(folder).refresh())
        result["stats_first_s"] = first("/api/v1/stats", **week)
        result["metrics_scrape_first_s"] = first("/metrics")
        with TestClient(create_app(config), base_url="https://testserver", client=("127.0.0.1", 1)) as client:

            def login() -> None:
                form = client.get("/login").text
                csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
                client.post("/login", data={"name": "admin", "password": "a long password", "csrf": csrf})

            client.get("/metrics")  # the first read, timed above
            result["stats_after_100_s"] = after_100(client, "/api/v1/stats", **week)
            result["metrics_scrape_after_100_s"] = after_100(client, "/metrics")
            result["login_s"] = median_of(3, login)
            result["dashboard_page_after_100_s"] = after_100(client, "/dashboard", params={"window": "week"})
            result["api_search_s"] = median_of(3, lambda: client.get("/api/v1/quarantine", headers=headers,
                                                                    params={"sender": "s1999@"}))  # fmt: skip
            result["stats_memory_buckets"] = list(client.app.state.console.stats.buckets)  # type: ignore[attr-defined]
        log.close()
        delivery.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
