"""Cost of the web console's reads: the dashboard and /api/v1/stats over the tracking log, a
/metrics scrape, an API search over the quarantine, and a login (one argon2id check).

Writes ``--events`` tracking events (a third SEND in the delivery file, one in fifteen REJECT
with an AV finding, the rest RECEIVE with an SCL finding; spread over the past week) and
``--entries`` quarantine entries into a temporary data folder, then times each request through
FastAPI's TestClient (in process: no TLS, no network), three runs each, and prints the median
wall and CPU seconds as JSON.
``*_first`` is a console's first call (it reads every line on disk), ``*_after_100`` a
later call after 100 more events were written (it reads those only), ``full_reread`` what
one pass over every line costs (what each scrape cost before the incremental reader), and
``reader_first`` the incremental reader's first pass alone, without HTTP.

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


class Runs:
    """Wall and CPU seconds of several runs (the CPU time counts the process's every thread,
    the TestClient's server thread included, and is what holds on a busy shared machine)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def time(self, call: object) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        call()  # type: ignore[operator]
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)

    def median(self) -> dict[str, float]:
        return {
            "wall_s": round(statistics.median(self.wall), 4),
            "cpu_s": round(statistics.median(self.cpu), 4),
        }


def median_of(runs: int, call: object) -> dict[str, float]:
    got = Runs()
    for _ in range(runs):
        got.time(call)
    return got.median()


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

        def first(path: str, **kw: object) -> dict[str, float]:
            """Median of three fresh consoles' first call (setting one up is not timed)."""
            got = Runs()
            for _ in range(3):
                with TestClient(
                    create_app(config), base_url="https://testserver", client=("127.0.0.1", 1)
                ) as c:
                    got.time(lambda: c.get(path, **kw))
            return got.median()

        def after_100(client: TestClient, path: str, **kw: object) -> dict[str, float]:
            got = Runs()
            for _ in range(3):
                more()
                got.time(lambda: client.get(path, **kw))
            return got.median()

        def reread() -> None:
            for name in (LOG_NAME, DELIVERY_LOG_NAME, ADMIN_LOG_NAME):
                for _ in read_entries(folder, name):
                    pass

        week = {"params": {"window": "week"}, "headers": headers}
        result: dict[str, object] = {"events": args.events, "entries": args.entries,
                                     "full_reread": median_of(3, reread)}  # fmt: skip
        result["reader_first"] = median_of(3, lambda: TrackingStats(folder).refresh())
        result["stats_first"] = first("/api/v1/stats", **week)
        result["metrics_scrape_first"] = first("/metrics")
        with TestClient(create_app(config), base_url="https://testserver", client=("127.0.0.1", 1)) as client:

            def login() -> None:
                form = client.get("/login").text
                csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
                client.post("/login", data={"name": "admin", "password": "a long password", "csrf": csrf})

            client.get("/metrics")  # the first read, timed above
            result["stats_after_100"] = after_100(client, "/api/v1/stats", **week)
            result["metrics_scrape_after_100"] = after_100(client, "/metrics")
            result["login"] = median_of(3, login)
            result["dashboard_page_after_100"] = after_100(client, "/dashboard", params={"window": "week"})
            result["api_search"] = median_of(3, lambda: client.get("/api/v1/quarantine", headers=headers,
                                                                    params={"sender": "s1999@"}))  # fmt: skip
            result["stats_memory_buckets"] = list(client.app.state.console.stats.buckets)  # type: ignore[attr-defined]
        log.close()
        delivery.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
