"""Component tests of the spool: accept, states, delivery bookkeeping, viewer operations."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from edgeward.errors import QueueError
from edgeward.queue import MessageRecord, QueueState, RecipientRecord, RecipientStatus, Spool
from edgeward.queue.model import IdGenerator, decode_record, encode_record, valid_id

BODY = (
    b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hello\r\n"
    b"Message-ID: <m1@example.org>\r\n\r\nhi\r\n"
)


class FixedClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def record(spool: Spool, **kw: object) -> MessageRecord:
    base = MessageRecord(
        id=spool.new_id(),
        mail_from="a@example.org",
        recipients=(RecipientRecord("b@example.net", notify=("SUCCESS", "DELAY")),),
        received_at=spool_clock(spool).now(),
        size=len(BODY),
        client_ip="192.0.2.1",
        message_id="<m1@example.org>",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def spool_clock(spool: Spool) -> FixedClock:
    clock = spool._clock
    assert isinstance(clock, FixedClock)
    return clock


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def spool(tmp_path: Path, clock: FixedClock) -> Spool:
    return Spool(tmp_path / "q", clock=clock)


async def test_accept_then_load_round_trips(spool: Spool) -> None:
    rec = record(spool, envid="ENV1", ret="HDRS")
    msg_id = await spool.accept(rec, BODY)
    assert msg_id == rec.id
    loaded = spool.load(msg_id)
    assert loaded == replace(rec, state=QueueState.INCOMING)
    assert spool.read_data(msg_id) == BODY
    with spool.open_data(msg_id) as fh:
        assert fh.read(4) == b"From"
    assert spool.export(msg_id) == BODY
    assert spool.counts()[QueueState.INCOMING] == 1


async def test_accept_assigns_an_id_when_missing(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool, id=""), BODY)
    assert valid_id(msg_id)
    assert spool.load(msg_id).id == msg_id


async def test_files_are_private(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    for path in (spool.root / "data" / f"{msg_id}.eml", spool.root / "incoming" / f"{msg_id}.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in ("tmp", "data", "incoming", "active", "deferred", "hold", "corrupt"):
        assert stat.S_IMODE((spool.root / folder).stat().st_mode) == 0o700


async def test_concurrent_accepts_share_fsync_rounds(tmp_path: Path) -> None:
    rounds: list[int] = []
    spool = Spool(tmp_path, clock=FixedClock(), on_commit=rounds.append)
    n = 50
    ids = await asyncio.gather(*(spool.accept(record(spool), BODY) for _ in range(n)))
    assert len(set(ids)) == n
    assert sum(rounds) == n
    assert len(rounds) < n
    assert {r.id for r in spool.list(QueueState.INCOMING)} == set(ids)


async def test_a_failed_accept_leaves_nothing_visible(spool: Spool) -> None:
    rec = record(spool)
    await spool.accept(rec, BODY)
    # The same id again: O_EXCL refuses to overwrite the stored message.
    with pytest.raises(QueueError):
        await spool.accept(replace(rec, mail_from="evil@example.com"), b"other")
    assert spool.load(rec.id).mail_from == "a@example.org"
    assert spool.read_data(rec.id) == BODY
    assert os.listdir(spool.root / "tmp") == []


async def test_failed_publish_takes_back_the_whole_round(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgeward.queue.commit as commit

    def broken(path: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(commit, "sync_dir", broken)
    results = await asyncio.gather(
        *(spool.accept(record(spool), BODY) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, QueueError) for r in results)
    assert spool.list() == []
    assert os.listdir(spool.root / "data") == [] and os.listdir(spool.root / "tmp") == []


async def test_invalid_ids_are_refused(spool: Spool) -> None:
    with pytest.raises(QueueError):
        await spool.accept(record(spool, id="../../etc/passwd"), BODY)
    for bad in ("../x", "a/b", "", "x.json"):
        with pytest.raises(KeyError):
            spool.load(bad)
        with pytest.raises(KeyError):
            spool.read_data(bad)


def test_ids_sort_by_time_and_are_unique() -> None:
    clock = FixedClock()
    gen = IdGenerator(clock)
    same_ms = [gen() for _ in range(1000)]
    assert len(set(same_ms)) == 1000 and same_ms == sorted(same_ms)
    clock.t += 0.002
    later = gen()
    assert later > same_ms[-1]
    assert all(valid_id(i) and len(i) == 18 for i in [*same_ms, later])


def test_json_tolerates_unknown_fields_and_rejects_missing_ones() -> None:
    rec = MessageRecord("01ABC", "", (RecipientRecord("x@example.net"),), 1.0, 10)
    obj = json.loads(encode_record(rec))
    assert obj["v"] == 1 and "state" not in obj
    obj["from_the_future"] = {"x": 1}
    obj["recipients"][0]["also_new"] = True
    obj["v"] = 7
    assert decode_record(json.dumps(obj).encode(), QueueState.DEFERRED) == replace(
        rec, state=QueueState.DEFERRED
    )
    del obj["mail_from"]
    with pytest.raises(ValueError):
        decode_record(json.dumps(obj).encode(), QueueState.DEFERRED)
    with pytest.raises(ValueError):
        decode_record(b"\xff{not json", QueueState.INCOMING)


async def test_claim_update_finish(spool: Spool, clock: FixedClock) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    claimed = spool.claim(msg_id)
    assert claimed.state is QueueState.ACTIVE and claimed.crash_count == 0
    assert spool.counts()[QueueState.ACTIVE] == 1
    with pytest.raises(KeyError):
        spool.claim(msg_id)  # already active: nobody else may claim it
    rcpt = replace(
        claimed.recipients[0], status=RecipientStatus.DEFERRED, attempts=1, last_reply="451 4.4.1 x"
    )
    after = replace(claimed, recipients=(rcpt,), attempts=1, next_attempt_at=clock.t + 60)
    spool.update(after, QueueState.DEFERRED)
    loaded = spool.load(msg_id)
    assert loaded == replace(after, state=QueueState.DEFERRED)
    assert loaded.last_reply == "451 4.4.1 x"
    assert [p.name for p in (spool.root / "active").iterdir()] == []
    spool.claim(msg_id)
    spool.finish(msg_id)
    with pytest.raises(KeyError):
        spool.load(msg_id)
    assert os.listdir(spool.root / "data") == []
    with pytest.raises(KeyError):
        spool.finish(msg_id)


async def test_due_respects_times_and_order(spool: Spool, clock: FixedClock) -> None:
    old = await spool.accept(record(spool, received_at=clock.t - 100), BODY)
    new = await spool.accept(record(spool), BODY)
    later = await spool.accept(record(spool, received_at=clock.t - 200), BODY)
    soon = await spool.accept(record(spool, received_at=clock.t - 300), BODY)
    for msg_id, when in ((later, clock.t + 600), (soon, clock.t - 1)):
        rec = spool.claim(msg_id)
        spool.update(replace(rec, next_attempt_at=when), QueueState.DEFERRED)
    assert [r.id for r in spool.due(clock.t, 10)] == [soon, old, new]
    assert [r.id for r in spool.due(clock.t, 2)] == [soon, old]
    assert [r.id for r in spool.due(clock.t + 600, 10)] == [soon, later, old, new]


async def test_listing_sees_changes_made_by_another_spool(spool: Spool, tmp_path: Path) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    assert spool.list(QueueState.INCOMING)[0].hold_reason == ""  # now cached
    other = Spool(spool.root, clock=FixedClock())
    other.hold(msg_id, "look")
    assert spool.list(QueueState.INCOMING) == []
    assert spool.list(QueueState.HOLD)[0].hold_reason == "look"
    other.release(msg_id)
    assert spool.list(QueueState.HOLD) == []
    assert [r.state for r in spool.list()] == [QueueState.DEFERRED]


async def test_hold_and_release(spool: Spool, clock: FixedClock) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    spool.hold(msg_id, "suspicious")
    held = spool.load(msg_id)
    assert held.state is QueueState.HOLD and held.hold_reason == "suspicious"
    assert spool.due(clock.t + 1e6, 10) == []
    with pytest.raises(KeyError):
        spool.claim(msg_id)  # a held message is not claimable
    assert spool.retry(msg_id) == 0
    clock.t += 30
    spool.release(msg_id)
    released = spool.load(msg_id)
    assert released.state is QueueState.DEFERRED and released.hold_reason == ""
    assert released.next_attempt_at == clock.t
    assert [r.id for r in spool.due(clock.t, 10)] == [msg_id]
    with pytest.raises(QueueError, match="not held"):
        spool.release(msg_id)


async def test_hold_refuses_a_message_in_delivery(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    spool.claim(msg_id)
    with pytest.raises(QueueError, match="being delivered"):
        spool.hold(msg_id)
    with pytest.raises(QueueError, match="being delivered"):
        spool.remove(msg_id)
    assert spool.load(msg_id).state is QueueState.ACTIVE


async def test_retry_one_and_all(spool: Spool, clock: FixedClock) -> None:
    ids = [await spool.accept(record(spool), BODY) for _ in range(3)]
    for msg_id in ids:
        spool.update(replace(spool.claim(msg_id), next_attempt_at=clock.t + 3600), QueueState.DEFERRED)
    assert spool.due(clock.t, 10) == []
    assert spool.retry(ids[0]) == 1
    assert [r.id for r in spool.due(clock.t, 10)] == [ids[0]]
    assert spool.retry(ids[0]) == 0  # already due
    assert spool.retry() == 2
    assert {r.id for r in spool.due(clock.t, 10)} == set(ids)
    with pytest.raises(KeyError):
        spool.retry("0" * 18)


async def test_remove_returns_the_record_and_deletes_everything(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    removed = spool.remove(msg_id)
    assert removed.id == msg_id and removed.state is QueueState.INCOMING
    assert removed.mail_from == "a@example.org"
    assert spool.list() == []
    for folder in ("data", "tmp"):
        assert os.listdir(spool.root / folder) == []
    with pytest.raises(KeyError):
        spool.remove(msg_id)
    with pytest.raises(KeyError):
        spool.export(msg_id)


async def test_corrupt_metadata_is_listed_and_can_be_repaired(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    # Deferred: an incoming record that does not parse is rebuilt from the data file's head
    # instead (tests/queue/test_spool_datafile.py).
    spool.update(replace(spool.claim(msg_id), attempts=1), QueueState.DEFERRED)
    path = spool.root / "deferred" / f"{msg_id}.json"
    good = path.read_bytes()
    path.write_bytes(b'{"v": 1, "id": ')
    report = spool.recover()
    assert report.corrupt == (msg_id,)
    (shown,) = spool.list()
    assert shown.state is QueueState.CORRUPT and shown.hold_reason.startswith("corrupt")
    assert shown.size == len(BODY)
    assert spool.export(msg_id) == BODY  # the data stays readable
    with pytest.raises(QueueError, match="unreadable"):
        spool.release(msg_id)
    (spool.root / "corrupt" / f"{msg_id}.json").write_bytes(good)  # an administrator repairs it
    spool.release(msg_id)
    assert spool.load(msg_id).state is QueueState.DEFERRED


async def test_claim_parks_unreadable_metadata(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    (spool.root / "incoming" / f"{msg_id}.json").write_bytes(b"[]")
    with pytest.raises(KeyError):
        spool.claim(msg_id)
    assert spool.counts()[QueueState.CORRUPT] == 1


async def test_recover_requeues_then_parks_poison(tmp_path: Path, clock: FixedClock) -> None:
    spool = Spool(tmp_path, clock=clock, poison_threshold=2)
    msg_id = await spool.accept(record(spool), BODY)
    spool.claim(msg_id)  # ... and the process dies mid-delivery
    report = Spool(tmp_path, clock=clock).recover()
    assert report.requeued == (msg_id,) and report.poisoned == ()
    again = spool.load(msg_id)
    assert again.state is QueueState.INCOMING and again.crash_count == 1
    spool.claim(msg_id)  # dies again
    report = Spool(tmp_path, clock=clock).recover()
    assert report.poisoned == (msg_id,)
    parked = spool.load(msg_id)
    assert parked.state is QueueState.HOLD and parked.hold_reason == "poison" and parked.crash_count == 2
    assert spool.due(clock.t + 1e9, 10) == []


async def test_a_completed_attempt_keeps_the_pre_claim_crash_count(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool, crash_count=1), BODY)
    rec = spool.claim(msg_id)
    spool.update(rec, QueueState.DEFERRED)
    assert spool.load(msg_id).crash_count == 1
    assert spool.recover().requeued == ()


async def test_recover_cleans_leftovers(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    (spool.root / "tmp" / "X.new.abcd").write_bytes(b"half")
    (spool.root / "data" / "ORPHAN.eml").write_bytes(b"never committed")
    missing = await spool.accept(record(spool), BODY)
    (spool.root / "data" / f"{missing}.eml").unlink()
    report = spool.recover()
    assert report.tmp_removed == 1 and report.orphans_removed == 1
    assert report.corrupt == (missing,)
    assert os.listdir(spool.root / "tmp") == []
    assert spool.load(msg_id).state is QueueState.INCOMING
    assert spool.load(missing).state is QueueState.CORRUPT


async def test_vanished_files_are_skipped_or_reported(spool: Spool) -> None:
    msg_id = await spool.accept(record(spool), BODY)
    spool.list()
    os.unlink(spool.root / "incoming" / f"{msg_id}.json")  # another process removed it
    assert spool.list() == []
    assert spool.due(1e12, 10) == []
    for op in (spool.claim, spool.load, spool.hold, spool.release, spool.remove):
        with pytest.raises(KeyError):
            op(msg_id)


def test_free_bytes_is_positive(spool: Spool) -> None:
    assert spool.free_bytes() > 0
