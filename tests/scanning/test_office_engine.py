"""The Office engine through its worker processes: findings, the time limit, a dying worker."""

from __future__ import annotations

import io
import os
import signal
import zipfile

import pytest

from edgeward.ports import ScanEngineError, ScanHit, ScanItem
from edgeward.scanning.office import OfficeEngine
from tests.scanning.office_samples import item, sample


async def test_findings_come_back_from_a_worker_with_their_paths() -> None:
    engine = OfficeEngine(timeout=60, workers=1)
    try:
        hits = await engine.scan([
            ScanItem(b"just text", "1", "notes.txt", "text/plain", "text/plain"),
            item("oleform/oleform-PR314.docm"),
            item("oleobj/external_link/sample_with_external_link_to_doc.docx"),
        ])  # fmt: skip
        assert ScanHit("AV_MACRO_AUTOEXEC", "office", "Frame1_Click", "2/oleform-PR314.docm") in hits
        assert {(h.name, h.path) for h in hits} >= {
            ("AV_MACRO", "2/oleform-PR314.docm"),
            ("AV_EXTERNAL_REFERENCE", "2/sample_with_external_link_to_doc.docx"),
        }
        assert all(h.path != "1" for h in hits)
        status = await engine.status()
        assert status.healthy and status.version.startswith("oletools ")
    finally:
        await engine.close()


async def test_a_document_past_the_time_limit_is_killed_and_unanswered() -> None:
    # The RTF specification takes rtfobj seconds to walk; a 50 ms limit stops it.
    engine = OfficeEngine(timeout=0.05, workers=1)
    try:
        with pytest.raises(ScanEngineError, match=r"passed 0\.05s; stopped"):
            await engine.scan([item("msodde/RTF-Spec-1.7.rtf")])
        assert engine.killed == 1
        engine.timeout = 60
        # A fresh worker takes the next message.
        hits = await engine.scan([item("olevba/sample_with_vba.ppt")])
        assert ("AV_MACRO_AUTOEXEC", "Action_Click") in {(h.name, h.signature) for h in hits}
        assert "stopped at the time limit" in (await engine.status()).detail
    finally:
        await engine.close()


async def test_a_worker_that_dies_is_an_unanswered_item_then_replaced() -> None:
    engine = OfficeEngine(timeout=60, workers=1)
    try:
        await engine.scan([item("msodde/harmless-clean.doc")])
        worker = engine._idle.get_nowait()
        assert worker is not None
        engine._idle.put_nowait(worker)
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait()
        # A dead worker is noticed before use and replaced: the scan still answers.
        assert await engine.scan([item("msodde/harmless-clean.doc")]) == []
    finally:
        await engine.close()


async def test_garbage_with_office_magic_is_answered() -> None:
    engine = OfficeEngine(timeout=60, workers=1)
    try:
        junk = [
            ScanItem(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + os.urandom(5000), "1", "a.doc"),
            ScanItem(b"PK\x03\x04" + os.urandom(5000), "2", "a.docx"),
            ScanItem(b"{\\rtf1" + os.urandom(5000), "3", "a.rtf"),
            ScanItem(sample("oleform/oleform-PR314.docm")[:3000], "4", "cut.docm"),
        ]
        hits = await engine.scan(junk)
        assert all(h.engine == "office" for h in hits)
    finally:
        await engine.close()


async def test_a_closed_engine_answers_nothing() -> None:
    engine = OfficeEngine(timeout=60, workers=1)
    await engine.close()
    with pytest.raises(ScanEngineError, match="closed"):
        await engine.scan([item("msodde/harmless-clean.doc")])
    assert not (await engine.status()).healthy


async def test_parts_of_a_document_the_walk_unpacked_are_not_analysed_again() -> None:
    from edgeward.scanning.walk import walk_message
    from tests.scanning.builders import message

    docm = sample("oleform/oleform-PR314.docm")
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as zf:
        zf.writestr("inside.docm", docm)
    walked = walk_message(
        message(
            ("invoice.docm", docm, "application/octet-stream"),
            ("bundle.zip", plain_zip.getvalue(), "application/zip"),
        )
    )
    assert any(i.path.endswith("!word/vbaProject.bin") for i in walked.items)
    engine = OfficeEngine(timeout=60, workers=1)
    try:
        hits = await engine.scan(walked.items)
    finally:
        await engine.close()
    macro_paths = sorted({h.path for h in hits if h.name == "AV_MACRO"})
    # The document itself, and the one inside a plain zip; never its vbaProject.bin part.
    assert macro_paths == ["2/invoice.docm", "3/bundle.zip!inside.docm"]


async def test_a_zip_that_is_no_document_never_reaches_a_worker() -> None:
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as zf:
        zf.writestr("report.txt", "quarterly figures\n" * 1000)
        zf.writestr("photo.jpg", os.urandom(4096))
    zip_type = "application/zip"
    archive = ScanItem(plain_zip.getvalue(), "2/archive.zip", "archive.zip", zip_type, zip_type)
    engine = OfficeEngine(timeout=60, workers=1)
    try:
        assert await engine.scan([archive]) == []
        assert engine._started == []  # no worker was started for it
        docm = item("oleform/oleform-PR314.docm")
        assert any(h.name == "AV_MACRO" for h in await engine.scan([archive, docm]))
        assert len(engine._started) == 1
    finally:
        await engine.close()
