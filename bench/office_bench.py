"""What the Office engine's worker processes cost against running oletools in a thread.

The engine runs :func:`edgeward.scanning.office_analysis.analyze` in killable worker processes
(``scanning/office.py``) because a thread cannot be stopped. This measures, in one run on the
same documents (oletools' samples from ``../shared/corpora``, read in memory): documents/s
through ``OfficeEngine`` (processes, 1 and 2 workers, ``--concurrency`` scans at once) against
``asyncio.to_thread(analyze, ...)`` with the same concurrency, and a plain non-Office attachment
(which never reaches a worker), and the start of one worker. Prints the ratios.

    python bench/office_bench.py                 # 200 documents per way, 4 at once
    python bench/office_bench.py --rounds 50 --concurrency 1
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from tests.scanning.office_samples import item  # noqa: E402

from edgeward.ports import ScanItem  # noqa: E402
from edgeward.scanning.office import OfficeEngine, _Worker  # noqa: E402
from edgeward.scanning.office_analysis import analyze  # noqa: E402
from edgeward.scanning.oletools_setup import harden_xml  # noqa: E402

DOCUMENTS = [
    "oleform/oleform-PR314.docm",
    "msodde/dde-test.docx",
    "msodde/harmless-clean.doc",
    "excel4-macros/excel4_sample_macro.xls",
    "oleobj/embedded-simple-2007.xlsx",
]


async def timed(label: str, rounds: int, concurrency: int, scan: object) -> float:
    assert callable(scan)
    docs = [item(name) for name in DOCUMENTS]
    queue = list(range(rounds))

    async def worker() -> None:
        while queue:
            n = queue.pop()
            await scan(docs[n % len(docs)])

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = rounds / (time.perf_counter() - start)
    print(f"{label:<42} {rate:8.1f} documents/s")
    return rate


async def main(args: argparse.Namespace) -> None:
    harden_xml()

    async def in_thread(doc: ScanItem) -> None:
        await asyncio.to_thread(analyze, doc.data, doc.name, doc.declared_type, doc.true_type)

    thread = await timed("oletools in a thread", args.rounds, args.concurrency, in_thread)
    results = {}
    for workers in (1, 2):
        engine = OfficeEngine(timeout=120, workers=workers)
        await engine.scan([item(DOCUMENTS[0])] * workers)  # start the workers outside the timing

        async def in_pool(doc: ScanItem, engine: OfficeEngine = engine) -> None:
            await engine.scan([doc])

        results[workers] = await timed(f"OfficeEngine, {workers} worker process(es)", args.rounds,
                                       args.concurrency, in_pool)  # fmt: skip
        await engine.close()
    plain = OfficeEngine(timeout=120, workers=1)
    text = ScanItem(b"Dear customer, please find the report attached.\r\n" * 200, "1", "a.txt", "text/plain")
    start = time.perf_counter()
    for _ in range(args.rounds * 20):
        await plain.scan([text])
    rate = args.rounds * 20 / (time.perf_counter() - start)
    print(f"{'a plain text item (sniffed, not sent)':<42} {rate:8.0f} items/s")
    await plain.close()
    start = time.perf_counter()
    worker = await asyncio.to_thread(_Worker, 1024**3)
    await asyncio.to_thread(worker.call, {"name": "a.doc"}, item(DOCUMENTS[2]).data, 60)
    print(f"{'start of one worker + its first document':<42} {time.perf_counter() - start:8.3f} s")
    worker.kill()
    print(f"ratio processes/thread: 1 worker {results[1] / thread:.2f}, 2 workers {results[2] / thread:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    asyncio.run(main(parser.parse_args()))
