"""What an Excel 4 (XLM) macro sheet does: runs on open, and calls programs or Windows APIs.

olevba says a workbook has a macro sheet (``AV_XLM_MACRO``) and, for .xls only, finds an
``Auto_Open`` name. A gateway wants to know more: whether the sheet runs by itself and whether
it starts programs (``EXEC``), calls DLL functions (``CALL``, ``REGISTER``) or names the
download APIs droppers use (``URLDownloadToFile``). This module reads the formulas of every
format and gives:

- ``AV_MACRO_AUTOEXEC`` ``xlm:Auto_Open`` (also ``Auto_Close``, ``Auto_Activate``...) for
  .xlsm/.xlsb: a defined name Excel runs by itself (any name starting with it, as Excel does:
  malware names them ``Auto_Open2``); olevba reports these names of an .xls itself;
- ``AV_MACRO_SUSPICIOUS`` ``xlm:EXEC`` / ``xlm:CALL`` / ``xlm:REGISTER`` / ``xlm:RUN`` and
  ``xlm:URLDownloadToFile`` (or another API of :data:`APIS`) when a formula uses them.

Formats: .xls (BIFF8; the formulas as oletools' plugin_biff prints them, from olevba's
``xlm_macros``), .xlsm (``xl/macrosheets/*.xml``, ``<f>`` elements, and ``definedName`` in
``xl/workbook.xml``) and .xlsb (BIFF12 records: the formula records of the macro sheets, whose
function tokens are read by id, and the names in ``xl/workbook.bin``).

Deobfuscation: XLM malware hides its calls as ``CHAR(69)&CHAR(88)&...`` or builds them with
``FORMULA()`` into other cells. :func:`unfold` folds ``CHAR(n)`` and string concatenation into
plain text before searching, so a call spelt out character by character is still found. It
does not emulate the sheet (no cell values, no ``GOTO``): XLMMacroDeobfuscator does, but it
reads workbooks only from a file on disk (which this gateway never writes) and has had no
release since 2022 on a parser library that is no longer maintained, so it is not used.

Bounds: at most ``MAX_FORMULAS`` formulas of at most ``MAX_FORMULA`` characters, parts read at
most ``MAX_PART`` bytes, and the fold stops after ``MAX_ROUNDS`` rounds. The analysis runs in
the Office worker, which is killed at the message's time limit in any case.
"""

from __future__ import annotations

import re
import struct
import zipfile
from collections.abc import Iterable, Iterator

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

__all__ = ["APIS", "biff8_findings", "package_findings", "unfold"]

Finding = tuple[str, str]
MAX_FORMULAS = 20_000
MAX_FORMULA = 8192
MAX_PART = 32 * 1024 * 1024
MAX_ROUNDS = 50

AUTO_NAMES = ("auto_open", "auto_close", "auto_activate", "auto_deactivate")
CALLS = ("EXEC", "CALL", "REGISTER", "RUN")
APIS = ("URLDownloadToFile", "ShellExecute", "WinExec", "CreateProcess", "VirtualAlloc", "CreateThread",
        "RtlMoveMemory", "WriteProcessMemory")  # fmt: skip
# BIFF function ids (MS-XLS Ftab/Cetab as a 16-bit value, the top bit marking a command).
FUNCTION_IDS = {0x006E: "EXEC", 0x0095: "REGISTER", 0x0096: "CALL", 0x8011: "RUN", 0x006F: "CHAR"}

_CHAR = re.compile(r"\bCHAR\(\s*(\d{1,3})(?:\.0+)?\s*\)", re.IGNORECASE)
_JOIN = re.compile(r'"([^"]*)"\s*&\s*"([^"]*)"')
_CALL = re.compile(r"(?<![A-Z0-9_.])(" + "|".join(CALLS) + r")\s*\(", re.IGNORECASE)
_API = re.compile("|".join(APIS), re.IGNORECASE)
_MACROSHEET = re.compile(r"^xl/(macrosheets|intlmacrosheets)/[^/]+\.(xml|bin)$", re.IGNORECASE)


def unfold(formula: str) -> str:
    """``formula`` with ``CHAR(n)`` as the character it makes and ``"a"&"b"`` joined."""
    text = formula[:MAX_FORMULA]
    for _ in range(MAX_ROUNDS):
        folded = _CHAR.sub(lambda m: '"' + chr(int(m.group(1))).replace('"', "") + '"', text)
        folded = _JOIN.sub(lambda m: f'"{m.group(1)}{m.group(2)}"', folded)
        if folded == text:
            break
        text = folded
    return text


def formula_findings(formulas: Iterable[str]) -> Iterator[Finding]:
    """The calls and APIs the formulas use, each once."""
    seen: set[Finding] = set()
    for count, formula in enumerate(formulas):
        if count >= MAX_FORMULAS:
            break
        text = unfold(formula)
        found = {("AV_MACRO_SUSPICIOUS", f"xlm:{m.upper()}") for m in _CALL.findall(text)}
        found |= {("AV_MACRO_SUSPICIOUS", f"xlm:{_api_name(m)}") for m in _API.findall(text)}
        for finding in sorted(found - seen):
            seen.add(finding)
            yield finding


def _api_name(match: str) -> str:
    return next(api for api in APIS if api.lower() == match.lower())


def name_findings(names: Iterable[str]) -> Iterator[Finding]:
    """``AV_MACRO_AUTOEXEC`` for defined names Excel runs when the workbook opens or closes."""
    seen: set[str] = set()
    for raw in names:
        name = raw.strip().removeprefix("_xlnm.").lower()
        for auto in AUTO_NAMES:
            if name.startswith(auto) and auto not in seen:
                seen.add(auto)
                yield "AV_MACRO_AUTOEXEC", "xlm:" + auto.title()


def biff8_findings(lines: Iterable[str]) -> Iterator[Finding]:
    """Findings from olevba's plugin_biff lines of an .xls: the formulas of its CSV part (olevba
    itself reports the ``Auto_Open`` names of these lines)."""
    # Record lines read "0018     23 LABEL : ..."; the CSV lines "Sheet,Reference,Formula,Value".
    yield from formula_findings(line for line in lines if not re.match(r"^[0-9a-f]{4} +\d+ ", line))


def _read(zf: zipfile.ZipFile, name: str) -> bytes:
    info = zf.getinfo(name)
    if info.flag_bits & 0x1:
        return b""
    with zf.open(info) as part:
        return part.read(MAX_PART)


def _xml_formulas(data: bytes) -> Iterator[str]:
    try:
        root = SafeET.fromstring(data)
    except (SafeET.ParseError, DefusedXmlException, ValueError):
        return
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "f" and element.text:
            yield element.text


def _xml_names(data: bytes) -> Iterator[str]:
    try:
        root = SafeET.fromstring(data)
    except (SafeET.ParseError, DefusedXmlException, ValueError):
        return
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "definedName":
            yield element.get("name", "")


def _varint(data: bytes, pos: int, most: int) -> tuple[int, int] | None:
    """A little-endian number of at most ``most`` bytes, 7 bits a byte (the high bit: more
    follow), and the position after it; None when the data ends first."""
    value, shift = 0, 0
    for _ in range(most):
        if pos >= len(data):
            return None
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return value, pos


def _records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """BIFF12 records (MS-XLSB 2.1.4): a 1-2 byte type and a 1-4 byte size, 7 bits a byte."""
    pos = 0
    while pos < len(data):
        if (kind := _varint(data, pos, 2)) is None or (size := _varint(data, kind[1], 4)) is None:
            return
        pos = size[1]
        yield kind[0], data[pos : pos + size[0]]
        pos += size[0]


# BrtFmlaString, BrtFmlaNum, BrtFmlaBool, BrtFmlaError: a cell (8 bytes), the cached value, two
# bytes of flags, then the formula (CellParsedFormula: cce, rgce).
_VALUE_SIZE = {9: 8, 10: 1, 11: 1}


def _rgce(kind: int, body: bytes) -> bytes:
    pos = 8
    if kind == 8:
        if len(body) < pos + 4:
            return b""
        (cch,) = struct.unpack_from("<I", body, pos)
        pos += 4 + 2 * cch
    else:
        pos += _VALUE_SIZE[kind]
    pos += 2
    if len(body) < pos + 4:
        return b""
    (cce,) = struct.unpack_from("<I", body, pos)
    return body[pos + 4 : pos + 4 + min(cce, MAX_FORMULA)]


def _tokens(rgce: bytes) -> str:
    """The function names and string constants of one BIFF12 formula, as text to search.

    Tokens are found by their codes (``ptgFunc``/``ptgFuncVar`` of each class and ``ptgStr``)
    rather than by walking every token's size: a stray byte may give a wrong name, never a
    missed call of the functions in :data:`FUNCTION_IDS`."""
    out: list[str] = []
    for pos, code in enumerate(rgce):
        if code in (0x21, 0x41, 0x61) and pos + 3 <= len(rgce):
            (fid,) = struct.unpack_from("<H", rgce, pos + 1)
        elif code in (0x22, 0x42, 0x62) and pos + 4 <= len(rgce):
            (fid,) = struct.unpack_from("<H", rgce, pos + 2)
        elif code == 0x17 and pos + 3 <= len(rgce):
            (cch,) = struct.unpack_from("<H", rgce, pos + 1)
            raw = rgce[pos + 3 : pos + 3 + 2 * cch]
            out.append('"' + raw.decode("utf-16-le", "replace").replace('"', "") + '"')
            continue
        else:
            continue
        name = FUNCTION_IDS.get(fid)
        if name is not None:
            out.append(name + "(")
    return " ".join(out)


def _bin_formulas(data: bytes) -> Iterator[str]:
    for kind, body in _records(data):
        if kind in (8, 9, 10, 11):
            tokens = _tokens(_rgce(kind, body))
            if tokens:
                yield tokens


def _bin_names(data: bytes) -> Iterator[str]:
    # BrtName (39) holds the name as an XLWideString after 13 bytes of fields; reading them is
    # not needed to see which auto-run names are defined, only both alignments of the text.
    for kind, body in _records(data):
        if kind == 39:
            for start in (0, 1):
                yield from re.findall(r"(?i)auto_[a-z]+", body[start:].decode("utf-16-le", "replace"))


def package_findings(zf: zipfile.ZipFile) -> Iterator[Finding]:
    """The XLM findings of an .xlsm/.xlsb (nothing for a package without macro sheets)."""
    sheets = [n for n in zf.namelist() if _MACROSHEET.match(n)]
    if not sheets:
        return
    names: list[str] = []
    for book in ("xl/workbook.xml", "xl/workbook.bin"):
        if book in zf.namelist():
            data = _read(zf, book)
            names.extend(_bin_names(data) if book.endswith(".bin") else _xml_names(data))
    yield from name_findings(names)

    def formulas() -> Iterator[str]:
        for sheet in sheets:
            data = _read(zf, sheet)
            yield from _bin_formulas(data) if sheet.endswith(".bin") else _xml_formulas(data)

    yield from formula_findings(formulas())
