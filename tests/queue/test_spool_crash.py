"""Crash safety: SIGKILL a process in the middle of many concurrent accepts, then recover."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgeward.queue import QueueState, Spool

CHILD = r"""
import asyncio, sys, time
from pathlib import Path
from edgeward.queue import MessageRecord, RecipientRecord, Spool

def body(msg_id):
    return (f"Message-ID: <{msg_id}@test>\r\nSubject: crash test\r\n\r\n".encode()
            + msg_id.encode() * 100 + b"\r\n")

async def worker(spool):
    while True:
        msg_id = spool.new_id()
        data = body(msg_id)
        rec = MessageRecord(msg_id, "a@example.org", (RecipientRecord("b@example.net"),),
                            time.time(), len(data))
        accepted = await spool.accept(rec, data)
        # Reported only once accept() returned: this is the moment a session would answer 250.
        sys.stdout.write(accepted + "\n")
        sys.stdout.flush()

async def main():
    spool = Spool(Path(sys.argv[1]))
    await asyncio.gather(*(worker(spool) for _ in range(20)))

asyncio.run(main())
"""


def body(msg_id: str) -> bytes:
    return (
        f"Message-ID: <{msg_id}@test>\r\nSubject: crash test\r\n\r\n".encode()
        + msg_id.encode() * 100
        + b"\r\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize("wanted", [50, 400])
def test_sigkill_during_concurrent_accepts_loses_nothing_acknowledged(tmp_path: Path, wanted: int) -> None:
    root = tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    acknowledged: list[str] = []
    try:
        while len(acknowledged) < wanted:
            line = child.stdout.readline()
            assert line, "the child ended before it was killed"
            acknowledged.append(line.decode().strip())
        # Kill in the middle of a round: once files of the next round are being written.
        while not os.listdir(root / "tmp"):
            pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    # Lines that were complete in the pipe when the child died count too.
    acknowledged += [x for x in child.stdout.read().decode().split("\n")[:-1] if x]
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    spool = Spool(root)
    report = spool.recover()
    assert report.corrupt == () and report.requeued == ()
    assert os.listdir(root / "tmp") == []
    for msg_id in acknowledged:
        rec = spool.load(msg_id)
        assert rec.state is QueueState.INCOMING
        assert spool.read_data(msg_id) == body(msg_id)
        assert rec.size == len(body(msg_id))
    # Whatever else is visible (committed after the last report) is whole, never half-written.
    visible = spool.list()
    assert {r.id for r in visible} >= set(acknowledged)
    for rec in visible:
        assert rec.state is QueueState.INCOMING
        assert spool.read_data(rec.id) == body(rec.id)
    data_files = {p.name.removesuffix(".eml") for p in (root / "data").iterdir()}
    assert data_files == {r.id for r in visible}
