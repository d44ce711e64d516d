"""The SHA-256 block list engine: parsing, hits, reloads and what status() says."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from edgeward.ports import ScanEngineError, ScanHit, ScanItem
from edgeward.scanning.hashlist import HashListEngine, parse_hash_list
from edgeward.testing.clock import FakeClock

BAD = b"this attachment is on the list"
OTHER = b"and so is this one, later"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_parse_skips_comments_and_counts_malformed_lines() -> None:
    text = (
        "# the list\n"
        f"{digest(BAD).upper()} Invoice.Dropper  # from the incident of May\n"
        "\n"
        "not-a-hash name\n"
        f"{digest(OTHER)}\n"
        f"{digest(BAD)[:-1]} too short\n"
        "  \t # only a comment\n"
        f"{digest(b'x')} name with \x1b[31m escapes\n"
    )
    parsed = parse_hash_list(text)
    assert parsed.entries[digest(BAD)] == "Invoice.Dropper"
    assert parsed.entries[digest(OTHER)] == digest(OTHER)  # no name: the hash names itself
    assert parsed.entries[digest(b"x")] == "name with ?[31m escapes"
    assert parsed.malformed == (4, 6)


async def test_hit_names_the_list_entry_and_the_path(tmp_path: Path) -> None:
    listed = tmp_path / "hashes.txt"
    listed.write_text(f"{digest(BAD)} Known.Bad\n")
    engine = HashListEngine(listed, clock=FakeClock())
    items = [ScanItem(b"clean", "1"), ScanItem(BAD, "2/a.zip!b.exe", "b.exe")]
    assert await engine.scan(items) == [ScanHit("AV_HASH_BLOCKED", "hashlist", "Known.Bad", "2/a.zip!b.exe")]
    assert await engine.scan([ScanItem(b"clean", "1")]) == []


async def test_large_items_are_hashed_too(tmp_path: Path) -> None:
    big = os.urandom(3 * 1024 * 1024)
    listed = tmp_path / "hashes.txt"
    listed.write_text(f"{digest(big)} Big.One\n")
    engine = HashListEngine(listed, clock=FakeClock())
    assert [h.signature for h in await engine.scan([ScanItem(big, "3")])] == ["Big.One"]


async def test_an_edit_is_picked_up_once_the_check_is_due(tmp_path: Path) -> None:
    clock = FakeClock()
    listed = tmp_path / "hashes.txt"
    listed.write_text(f"{digest(BAD)} First\n")
    engine = HashListEngine(listed, clock=clock, check_every=5.0)
    assert len(await engine.scan([ScanItem(OTHER, "1")])) == 0
    listed.write_text(f"{digest(BAD)} First\n{digest(OTHER)} Second\n")
    assert len(await engine.scan([ScanItem(OTHER, "1")])) == 0  # not due yet: no stat per scan
    clock.advance(5.0)
    assert [h.signature for h in await engine.scan([ScanItem(OTHER, "1")])] == ["Second"]
    assert engine.size == 2


async def test_reload_reads_at_once(tmp_path: Path) -> None:
    listed = tmp_path / "hashes.txt"
    listed.write_text("")
    engine = HashListEngine(listed, clock=FakeClock())
    assert await engine.scan([ScanItem(BAD, "1")]) == []
    listed.write_text(f"{digest(BAD)} Now\n")
    assert await engine.reload()
    assert len(await engine.scan([ScanItem(BAD, "1")])) == 1


async def test_no_list_is_no_answer_never_clean(tmp_path: Path) -> None:
    clock = FakeClock()
    listed = tmp_path / "missing.txt"
    engine = HashListEngine(listed, clock=clock)
    with pytest.raises(ScanEngineError, match="no list loaded"):
        await engine.scan([ScanItem(BAD, "1")])
    status = await engine.status()
    assert not status.healthy and "cannot read" in status.detail
    listed.write_text(f"{digest(BAD)} Arrived\n")
    clock.advance(10)
    assert len(await engine.scan([ScanItem(BAD, "1")])) == 1
    assert (await engine.status()).healthy


async def test_an_unreadable_list_keeps_the_last_good_one(tmp_path: Path) -> None:
    clock = FakeClock()
    listed = tmp_path / "hashes.txt"
    listed.write_text(f"{digest(BAD)} Kept\n")
    engine = HashListEngine(listed, clock=clock)
    assert len(await engine.scan([ScanItem(BAD, "1")])) == 1
    listed.write_bytes(b"\xff\xfe not utf-8 \x80")
    clock.advance(10)
    assert [h.signature for h in await engine.scan([ScanItem(BAD, "1")])] == ["Kept"]
    status = await engine.status()
    assert not status.healthy and "last good list" in status.detail


async def test_status_reports_size_age_and_malformed_lines(tmp_path: Path) -> None:
    listed = tmp_path / "hashes.txt"
    listed.write_text(f"{digest(BAD)} A\nbroken\n{digest(OTHER)} B\nalso broken\n")
    engine = HashListEngine(listed, clock=FakeClock())
    status = await engine.status()
    assert status.healthy and status.engine == "hashlist"
    assert status.version == "2 hashes"
    assert status.signatures_at == pytest.approx(listed.stat().st_mtime)
    assert "2 malformed line(s) skipped: 2, 4" in status.detail
