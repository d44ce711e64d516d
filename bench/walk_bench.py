"""Cost of the scanning walk per message, against the classifier's MIME reader, in one run.

Every message of the shared corpora (SpamAssassin, modern, parser tests) is read once by
``content.mime.parse_message`` (the peer: the reading every message already gets for the
classifier) and once by ``scanning.walk.walk_message`` (every leaf decoded, true type by
libmagic, archives unpacked). Printed per corpus group: messages, total and p99 time of each,
and the ratio walk / peer; then the peak RSS of the process. Timings are process CPU time, so
other load on the machine counts less.

    .venv/bin/python bench/walk_bench.py [--corpora ../shared/corpora] [--limit N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from edgeward.content.mime import parse_message
from edgeward.scanning.walk import walk_message

GROUPS = {
    "spamassassin": "spamassassin/*.tar.gz",
    "modern": "modern/*.tar.gz",
    "parser-tests": "parser-tests/*.tar.gz",
}
CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"


def messages(root: Path, pattern: str, limit: int) -> Iterator[bytes]:
    count = 0
    for path in sorted(root.glob(pattern)):
        with tarfile.open(path) as archive:
            for member in archive:
                stream = archive.extractfile(member) if member.isfile() else None
                if stream is None:
                    continue
                yield stream.read()
                count += 1
                if limit and count >= limit:
                    return


def timed(fn: Callable[[bytes], object], data: bytes) -> float:
    start = time.process_time()
    fn(data)
    return time.process_time() - start


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=CORPORA)
    parser.add_argument("--limit", type=int, default=0, help="messages per group (0: all)")
    args = parser.parse_args()
    if not args.corpora.exists():
        print(f"no corpora at {args.corpora}", file=sys.stderr)
        return 2
    print(f"{'group':<14}{'messages':>9}{'mime total s':>14}{'walk total s':>14}{'mime p99 ms':>13}"
          f"{'walk p99 ms':>13}{'walk/mime':>11}")
    for group, pattern in GROUPS.items():
        peer: list[float] = []
        walk: list[float] = []
        for data in messages(args.corpora, pattern, args.limit):
            peer.append(timed(parse_message, data))
            walk.append(timed(walk_message, data))
        if not walk:
            continue
        ratio = sum(walk) / max(sum(peer), 1e-9)
        print(f"{group:<14}{len(walk):>9}{sum(peer):>14.2f}{sum(walk):>14.2f}{p99(peer) * 1000:>13.2f}"
              f"{p99(walk) * 1000:>13.2f}{ratio:>11.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
