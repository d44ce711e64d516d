"""Cost of a quarantine search, without the SQLite index (every metadata file read) and with it.

Fills a quarantine in a temporary folder with ``--entries`` entries (a 20 KB message each, a
tenth of them from one sender), plain and sealed with AES-GCM, then times a search for that
sender and the first page of ``list``, each twice: ``files`` reads every entry's metadata
file (the search before the index, and its fallback), ``index`` asks the index
(``quarantine.index``: the folder is reconciled when it changed, the page read from its
files). ``settled`` is the index search once the folder's mtime is a second old (one
``stat``, no listing). Also the time ``quarantine reindex`` takes. Prints wall seconds.

    .venv/bin/python bench/quarantine_search_bench.py [--entries 100000]
"""

from __future__ import annotations

import argparse
import copy
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
    store = QuarantineStore(root, fsync=False, key=key, indexed=True)
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


def service(store: QuarantineStore) -> QuarantineService:
    return QuarantineService(store, lambda: None, print)  # type: ignore[arg-type,return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    args = parser.parse_args()
    print(f"{'store':<10} {'query':<12} {'how':<8} {'first s':>8} {'second s':>8} {'matches':>8}")
    for label, key in (("plain", None), ("encrypted", os.urandom(32))):
        with tempfile.TemporaryDirectory() as tmp:
            indexed = fill(Path(tmp) / "q", args.entries, key)
            files = copy.copy(indexed)
            files.index = None
            queries = (("sender", Search(sender="wave@spam.test")), ("list page 1", Search(limit=50)))
            for how, svc in (("files", service(files)), ("index", service(indexed))):
                for name, query in queries:
                    first, total = timed(svc, query)
                    second, _ = timed(svc, query)
                    print(f"{label:<10} {name:<12} {how:<8} {first:>8.3f} {second:>8.3f} {total:>8}")
            time.sleep(1.1)  # the folder's mtime settles: a search then needs no listing
            for name, query in queries:
                first, total = timed(service(indexed), query)
                second, _ = timed(service(indexed), query)
                print(f"{label:<10} {name:<12} {'settled':<8} {first:>8.3f} {second:>8.3f} {total:>8}")
            start = time.perf_counter()
            count = service(indexed).reindex()
            print(f"{label:<10} reindex of {count} entries: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
