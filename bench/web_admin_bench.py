"""Cost of the web console's administrators' views and queue actions.

Queues ``--messages`` messages into a spool in a temporary data folder (``Spool.accept``, as the
gateway queues them), then times through FastAPI's TestClient (in process: no TLS, no network)
the API's show of one message, a hold and release of one (two tracked actions), a selection of
``--selection`` messages held and released through the pages' bulk form, and the configuration,
certificates and agents pages; three runs each, the median wall seconds printed as JSON.

    .venv/bin/python bench/web_admin_bench.py [--messages 2000] [--selection 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
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
from edgeward.queue.model import MessageRecord, RecipientRecord  # noqa: E402
from edgeward.queue.spool import Spool  # noqa: E402
from edgeward.tls.store import CertificateStore  # noqa: E402
from edgeward.web.app import create_app  # noqa: E402
from edgeward.web.auth import WebAccounts  # noqa: E402


def median_of(runs: int, call: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def fill(spool: Spool, count: int) -> list[str]:
    data = b"From: s@remote.test\r\nTo: u@example.test\r\nSubject: bench\r\n\r\nbody\r\n"
    rcpts = (RecipientRecord("u@example.test"),)
    ids = []
    for _ in range(count):
        record = MessageRecord(id="", mail_from="s@remote.test", recipients=rcpts, received_at=time.time(),
                               size=len(data))  # fmt: skip
        ids.append(await spool.accept(record, data))
    return ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--selection", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Config.model_validate({
            "server": {"data_dir": tmp, "hostname": "mx.example.test"}, "queue": {"fsync": False},
            "accepted_domains": ["example.test"], "web": {"page_size_max": 1000},
        })  # fmt: skip
        ids = asyncio.run(fill(Spool(config.resolve(Path("queue")), fsync=False), args.messages))
        CertificateStore(config.resolve(config.tls.store)).ensure_default("mx.example.test")
        accounts = WebAccounts(config.resolve(Path("state")))
        accounts.add("admin", "bench password 1", "admin")
        auth = {"Authorization": f"Bearer {accounts.add_token('bench', 'admin')}"}
        chosen = ids[: args.selection]
        with TestClient(create_app(config), base_url="https://testserver") as client:
            form = client.get("/login").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
            client.post("/login", data={"name": "admin", "password": "bench password 1", "csrf": csrf})
            page = client.get("/config").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]

            def hold_release() -> None:
                client.post(f"/api/v1/queue/{ids[-1]}/hold", headers=auth).raise_for_status()
                client.post(f"/api/v1/queue/{ids[-1]}/release", headers=auth).raise_for_status()

            def bulk() -> None:
                for action in ("hold", "release"):
                    r = client.post("/queue/bulk", data={"csrf": csrf, "action": action, "id": chosen})
                    assert f"{len(chosen)} of {len(chosen)} done" in r.text, r.text

            result = {
                "messages": args.messages,
                "api_show_s": median_of(3, lambda: client.get(f"/api/v1/queue/{ids[0]}", headers=auth)),
                "api_hold_and_release_s": median_of(3, hold_release),
                f"bulk_hold_and_release_{len(chosen)}_s": median_of(3, bulk),
                "config_page_s": median_of(3, lambda: client.get("/config")),
                "certificates_page_s": median_of(3, lambda: client.get("/certificates")),
                "agents_page_s": median_of(3, lambda: client.get("/agents")),
                "queue_list_page_s": median_of(3, lambda: client.get("/queue")),
            }
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}, indent=2))


if __name__ == "__main__":
    main()
