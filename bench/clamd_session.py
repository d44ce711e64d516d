"""How ``ClamdScanner`` sends a message's items: one IDSESSION against one connection per item.

Starts a private clamd (``tests/scanning/clamd.py``: custom database only) and scans the items
of a typical message, ``--items`` parts of ``--size`` bytes, ``--rounds`` times each way in
turn, on the unix socket: one connection per item in turn, one connection per item all at once,
and one IDSESSION carrying every item (what ``ClamdScanner.scan`` does). Prints messages/s for
each and the ratio to the session.

    python bench/clamd_session.py                  # 5 items of 20 KB, 300 rounds
    python bench/clamd_session.py --items 20 --size 2000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from tests.scanning.clamd import start_clamd  # noqa: E402

from edgeward.ports import ScanItem  # noqa: E402
from edgeward.scanning.clamd import ClamdScanner  # noqa: E402


async def run(args: argparse.Namespace, sock: str) -> dict[str, float]:
    items = [ScanItem(bytes([65 + i % 26]) * args.size, str(i + 1)) for i in range(args.items)]
    scanner = ClamdScanner(sock, chunk_size=64 * 1024)

    async def in_turn() -> list[str | None]:
        return [await scanner._instream(item.data) for item in items]

    async def at_once() -> list[str | None]:
        return list(await asyncio.gather(*(scanner._instream(item.data) for item in items)))

    async def session() -> list[str | None]:
        return [None] * len(await scanner.scan(items)) or [None] * len(items)

    ways = {"in turn": in_turn, "at once": at_once, "idsession": session}
    spent = dict.fromkeys(ways, 0.0)
    for _ in range(args.rounds):
        for way, scan in ways.items():
            start = time.perf_counter()
            assert await scan() == [None] * len(items)
            spent[way] += time.perf_counter() - start
    return {way: args.rounds / seconds for way, seconds in spent.items()}


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--items", type=int, default=5)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clamd-bench-") as root:
        clamd = start_clamd(Path(root))
        try:
            rates = asyncio.run(run(args, str(clamd.socket)))
        finally:
            clamd.stop()
    print(f"{args.items} items of {args.size} bytes, {args.rounds} rounds")
    for way, rate in rates.items():
        print(f"{way:<10} {rate:8.1f} messages/s   ratio to idsession: {rate / rates['idsession']:.2f}")


if __name__ == "__main__":
    main()
