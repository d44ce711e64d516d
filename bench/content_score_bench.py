"""CPU time of the content classifier per message, for this tree against another, in one run.

Each source tree (this one, and ``--against DIR``, a checkout of another revision) scores, in a
child process of its own, the dev messages of every corpus set (``corpora.corpus_sets``) and
two synthetic messages shaped like the relay benchmark's (2 KB and 200 KB of 78-character
lines). The trees take turns, ``--rounds`` times, so that a slow minute of a shared machine
falls on both; printed per set: each tree's best round in ms of process CPU per message, and
the ratio. The spam model is the one each tree ships.

    .venv/bin/python bench/content_score_bench.py [--against /path/to/other/checkout] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT.parent / "shared" / "corpora"

# Runs inside the child: the tree under test is first on sys.path.
_CHILD = r"""
import json, sys, time
from pathlib import Path
from edgeward.content.classifier import SpamClassifier
from edgeward.content.corpora import corpus_sets

corpora, repeats = Path(sys.argv[1]), int(sys.argv[2])
head = b"From: a@bench.test\r\nTo: b@bench.test\r\nSubject: bench\r\nMessage-ID: <1@bench.test>\r\n\r\n"
line = b"X" * 78 + b"\r\n"
sets = {"2 KB lines": [head + line * 25], "200 KB lines": [head + line * 2560]}
for s in corpus_sets(corpora):
    if s.split == "dev":
        sets.setdefault(s.source, []).extend(raw for _, raw, _ in s.messages)
classifier = SpamClassifier.load()
out = {}
for name, messages in sets.items():
    n = max(1, 200 // len(messages))
    start = time.process_time()
    for _ in range(n * repeats):
        for raw in messages:
            classifier.score(raw)
    out[name] = (time.process_time() - start) / (n * repeats * len(messages))
print(json.dumps(out))
"""


def run_tree(tree: Path, corpora: Path, repeats: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(corpora), str(repeats)],
        capture_output=True, text=True, check=False,
        env={"PYTHONPATH": str(tree / "src"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{tree}: the scoring run failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=CORPORA)
    parser.add_argument("--against", type=Path, help="another source tree (a checkout) to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="turns each tree takes (best round reported)")
    parser.add_argument("--repeats", type=int, default=2, help="passes over each set per round")
    args = parser.parse_args()
    trees = [ROOT] + ([args.against.resolve()] if args.against else [])
    best: list[dict[str, float]] = [{} for _ in trees]
    for _ in range(args.rounds):
        for i, tree in enumerate(trees):
            for name, seconds in run_tree(tree, args.corpora, args.repeats).items():
                best[i][name] = min(best[i].get(name, seconds), seconds)
    header = f"{'set':<20} {'this tree ms':>13}"
    if args.against:
        header += f" {'other ms':>10} {'this/other':>10}"
    print(header)
    print("-" * len(header))
    for name, seconds in best[0].items():
        row = f"{name:<20} {seconds * 1000:>13.3f}"
        if args.against:
            other = best[1][name]
            row += f" {other * 1000:>10.3f} {seconds / other:>10.2f}"
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
