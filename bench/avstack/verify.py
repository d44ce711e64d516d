"""Proof that a stack scanned: every clean message at the sink with its scan header, every
infected one refused naming the infection, nothing else at the sink.

smtp-sink writes one file per message (``-d``); the Subject says what each message was
(``avbench <kind> <seq>``). A missing, extra or unstamped message fails the run, as a
measurement of a stack that skipped its scanner would be meaningless.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
import time
from pathlib import Path

from relay.procs import BenchError

from avstack.mail import LoadResult, kind_of

_SUBJECT = re.compile(r"avbench (\S+) (\d+)$")
# What each stack's refusal of an infected message says (Edgeward: 550 5.7.1 Virus found: ...;
# amavis: 554 5.7.0 Reject, id=... - INFECTED: ...), both naming the test database's signature.
REFUSAL = {"edgeward": "Virus found: Edgeward-Eicar", "amavis": "INFECTED: Edgeward-Eicar"}


def scan_stamp(stack: str, value: str | None, engines: tuple[str, ...]) -> bool:
    if value is None:
        return False
    if stack == "edgeward":
        return value == "scanned by " + ", ".join(engines)
    return value.startswith("amavisd-new")


def check(
    stack: str, dump_dir: Path, result: LoadResult, seqs: range, header: str, engines: tuple[str, ...]
) -> None:
    """Raise :class:`BenchError` unless ``stack`` scanned every message of ``seqs``; empty the dumps."""
    time.sleep(0.3)  # smtp-sink writes its dump as the message arrives; let the last one finish
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    seen: dict[int, str] = {}
    for path in sorted(dump_dir.iterdir()):
        if not path.is_file():
            continue
        head = parser.parsebytes(path.read_bytes())
        path.unlink()
        m = _SUBJECT.search(str(head.get("Subject", "")))
        if m is None:
            raise BenchError(f"{stack}: the sink has a message that is not the benchmark's: {path.name}")
        seq = int(m.group(2))
        if seq in seen:
            raise BenchError(f"{stack}: message {seq} reached the sink twice")
        stamp = head.get(header)
        if not scan_stamp(stack, None if stamp is None else str(stamp), engines):
            raise BenchError(f"{stack}: message {seq} ({m.group(1)}) delivered with {header}: {stamp!r}")
        seen[seq] = m.group(1)
    clean = {s for s in seqs if kind_of(s) not in ("eicar", "zip-eicar", "zip2-eicar")}
    infected = set(seqs) - clean
    if set(seen) != clean:
        extra, missing = sorted(set(seen) - clean), sorted(clean - set(seen))
        raise BenchError(f"{stack}: at the sink {len(seen)} of {len(clean)} clean messages"
                         f" (unexpected {extra[:5]}, missing {missing[:5]})")  # fmt: skip
    if set(result.refused) != infected:
        raise BenchError(
            f"{stack}: refused {sorted(result.refused)[:5]}, expected the infected {sorted(infected)[:5]}"
        )
    wrong = {s: r for s, r in result.refused.items() if REFUSAL[stack] not in r}
    if wrong:
        seq, reply = next(iter(wrong.items()))
        raise BenchError(f"{stack}: message {seq} refused without naming the virus: {reply!r}")
