"""Cost of a quarantine search, which reads every entry's metadata file and no message.

Fills a quarantine in a temporary folder with ``--entries`` entries (a 20 KB message each, a
tenth of them from one sender), plain and sealed with AES-GCM, then times a search for that
sender (the whole listing is read and filtered) and the first page of ``list``. Prints wall
seconds per search, the first and the second run (both with the files in the page cache, as on a busy host).

    .venv/bin/python bench/quarantine_search_bench.py [--entries 10000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from edgeward.quarantine.entry import HeldFinding, QuarantineEntry  # noqa: E402
from edgeward.quarantine.service import QuarantineService, Search  # noqa: E402
from edgeward.quarantine.store import QuarantineStore  # noqa: E402


def fill(root: Path, count: int, key: bytes | None) -> QuarantineStore:
    store = QuarantineStore(root, fsync=False, key=key)
    body = b"Subject: offer\r\n\r\n" + b"x" * 20_000
    for n in range(count):
        sender = "wave@spam.test" if n % 10 == 0 else f"s{n}@remote.test"
        findings = (
            HeldFinding("SCL_9", "content-filter", "p=0.99 pcl=1", 9.0),
            HeldFinding("PCL_1", "content-filter"),
        )
        rcpts = (f"u{n % 50}@example.test",)
        entry = QuarantineEntry("", sender, rcpts, "content-filter", scl=9, findings=("SCL_9", "PCL_1"),
                                details=findings, subject=f"offer {n}")  # fmt: skip
        store.put(entry, body)
    return store


def timed(svc: QuarantineService, query: Search) -> tuple[float, int]:
    start = time.perf_counter()
    page = svc.search(query)
    return time.perf_counter() - start, page.total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    args = parser.parse_args()
    print(f"{'store':<10} {'query':<16} {'first s':>8} {'second s':>8} {'matches':>8}")
    for label, key in (("plain", None), ("encrypted", os.urandom(32))):
        with tempfile.TemporaryDirectory() as tmp:
            svc = QuarantineService(fill(Path(tmp) / "q", args.entries, key), lambda: None, print)  # type: ignore[arg-type,return-value]
            for name, query in (
                ("sender", Search(sender="wave@spam.test")),
                ("list page 1", Search(limit=50)),
            ):
                first, total = timed(svc, query)
                second, _ = timed(svc, query)
                print(f"{label:<10} {name:<16} {first:>8.3f} {second:>8.3f} {total:>8}")


if __name__ == "__main__":
    main()
