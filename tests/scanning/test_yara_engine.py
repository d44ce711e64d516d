"""The YARA engine: a rules folder compiled once, reloaded on change, never silently empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.ports import ScanEngineError, ScanHit, ScanItem
from edgeward.scanning.yara_engine import YaraEngine
from edgeward.testing.clock import FakeClock

MARKER = 'rule Test_Marker { strings: $m = "EDGEWARD-YARA-TEST" condition: $m }\n'
BY_NAME = "rule Exe_In_Disguise { condition: filename matches /\\.pdf$/ and uint16(0) == 0x5A4D }\n"
# Any anti-virus finding of the score table may be named (AV_INFECTED is the usual one).
AS_INFECTION = (
    'rule Known_Family { meta: finding = "AV_HASH_BLOCKED" strings: $f = "FAMILY-X" condition: $f }\n'
)
FORGING = 'rule Forger { meta: finding = "RCPT_RELAY_DENIED" strings: $f = "FORGE" condition: $f }\n'


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


async def test_rules_from_every_file_match_with_rule_names(tmp_path: Path) -> None:
    write(tmp_path, "marker.yar", MARKER)
    write(tmp_path, "sub/names.yara", BY_NAME)
    write(tmp_path, "README.txt", "not a rule file, never compiled {")
    engine = YaraEngine(tmp_path, clock=FakeClock())
    items = [
        ScanItem(b"xx EDGEWARD-YARA-TEST xx", "1"),
        ScanItem(
            b"MZ\x90\x00 program", "2/invoice.pdf", "invoice.pdf", "application/pdf", "application/x-dosexec"
        ),
        ScanItem(b"MZ\x90\x00 program", "3/tool.exe", "tool.exe"),
        ScanItem(b"clean", "4"),
    ]
    assert await engine.scan(items) == [
        ScanHit("AV_YARA_MATCH", "yara", "Test_Marker", "1"),
        ScanHit("AV_YARA_MATCH", "yara", "Exe_In_Disguise", "2/invoice.pdf"),
    ]
    status = await engine.status()
    assert status.healthy and "2 rules in 2 files" in status.version


async def test_externals_carry_the_item_facts(tmp_path: Path) -> None:
    write(tmp_path, "facts.yar", (
        'rule Facts { condition: extension == "docm" and filetype == "application/zip"'
        ' and declared_type == "application/octet-stream" and path == "2/a.docm" }\n'
    ))  # fmt: skip
    engine = YaraEngine(tmp_path, clock=FakeClock())
    item = ScanItem(b"PK", "2/a.docm", "a.DOCM", "application/octet-stream", "application/zip")
    assert [h.signature for h in await engine.scan([item])] == ["Facts"]


async def test_only_rules_that_read_filetype_get_the_text_subtype_of_a_coarse_item(tmp_path: Path) -> None:
    data = b"#!/bin/sh\nrm -rf /tmp/x\n"
    script = ScanItem(data, "2/a.txt", "a.txt", "text/plain", "text/plain", coarse=True)
    write(tmp_path, "marker.yar", MARKER)
    engine = YaraEngine(tmp_path, clock=FakeClock())
    await engine.reload()
    assert engine._set is not None and not engine._set.reads_filetype
    write(tmp_path, "script.yar", 'rule Script { condition: filetype == "text/x-shellscript" }\n')
    assert await engine.reload()
    assert engine._set is not None and engine._set.reads_filetype
    assert [h.signature for h in await engine.scan([script])] == ["Script"]
    # An item the walk typed in full is taken as it is: no second reading.
    plain = ScanItem(script.data, "2/a.txt", "a.txt", "text/plain", "text/plain")
    assert await engine.scan([plain]) == []


async def test_meta_finding_is_honoured_only_for_antivirus_names(tmp_path: Path) -> None:
    write(tmp_path, "family.yar", AS_INFECTION)
    write(tmp_path, "forger.yar", FORGING)
    engine = YaraEngine(tmp_path, clock=FakeClock())
    hits = await engine.scan([ScanItem(b"FAMILY-X", "1"), ScanItem(b"FORGE", "2")])
    assert [(h.name, h.signature) for h in hits] == [
        ("AV_HASH_BLOCKED", "Known_Family"),
        ("AV_YARA_MATCH", "Forger"),
    ]
    status = await engine.status()
    assert status.healthy and "Forger: finding 'RCPT_RELAY_DENIED'" in status.detail


async def test_a_changed_file_is_recompiled_when_the_check_is_due(tmp_path: Path) -> None:
    clock = FakeClock()
    rule = write(tmp_path, "marker.yar", MARKER)
    engine = YaraEngine(tmp_path, clock=clock, check_every=5.0)
    item = ScanItem(b"FAMILY-X", "1")
    assert await engine.scan([item]) == []
    rule.write_text(MARKER + AS_INFECTION)
    assert await engine.scan([item]) == []  # within check_every: the folder is not listed
    clock.advance(5.0)
    assert [h.signature for h in await engine.scan([item])] == ["Known_Family"]
    write(tmp_path, "new.yar", 'rule Added { strings: $a = "ADDED" condition: $a }\n')
    assert await engine.reload()
    assert [h.signature for h in await engine.scan([ScanItem(b"ADDED", "1")])] == ["Added"]
    assert engine.rule_count == 3


async def test_a_broken_rule_keeps_the_last_good_set_and_says_so(tmp_path: Path) -> None:
    clock = FakeClock()
    write(tmp_path, "marker.yar", MARKER)
    engine = YaraEngine(tmp_path, clock=clock)
    assert len(await engine.scan([ScanItem(b"EDGEWARD-YARA-TEST", "1")])) == 1
    broken = write(tmp_path, "broken.yar", 'rule Broken { strings: $a = "x" condition: $b }\n')
    clock.advance(10)
    assert len(await engine.scan([ScanItem(b"EDGEWARD-YARA-TEST", "1")])) == 1
    status = await engine.status()
    assert not status.healthy
    assert "broken.yar" in status.detail and "last good rule set is in use" in status.detail
    broken.unlink()
    clock.advance(10)
    assert (await engine.status()).healthy


async def test_no_good_rules_is_no_answer(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = YaraEngine(tmp_path, clock=clock)
    with pytest.raises(ScanEngineError, match=r"no \.yar or \.yara file"):
        await engine.scan([ScanItem(b"x", "1")])
    write(tmp_path, "broken.yar", "rule {")
    clock.advance(10)
    with pytest.raises(ScanEngineError, match="do not compile"):
        await engine.scan([ScanItem(b"x", "1")])
    assert not (await engine.status()).healthy


async def test_include_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "outside.txt", MARKER)
    write(tmp_path, "index.yar", f'include "{tmp_path / "outside.txt"}"\n')
    engine = YaraEngine(tmp_path, clock=FakeClock())
    with pytest.raises(ScanEngineError, match="include"):
        await engine.scan([ScanItem(b"EDGEWARD-YARA-TEST", "1")])


async def test_a_runaway_rule_is_stopped_by_yaras_timeout(tmp_path: Path) -> None:
    # Quadratic in the item's size: about 10^11 steps for 300 kB, far past one second.
    write(tmp_path, "slow.yar", (
        "rule Slow { condition: for all i in (0..filesize) : "
        "( for all j in (0..filesize) : ( uint8(i) == uint8(j) or true ) ) }\n"
    ))  # fmt: skip
    engine = YaraEngine(tmp_path, timeout=1, clock=FakeClock())
    with pytest.raises(ScanEngineError, match=r"timed out after 1s on 5/big\.bin"):
        await engine.scan([ScanItem(b"\x00" * 300_000, "5/big.bin")])
