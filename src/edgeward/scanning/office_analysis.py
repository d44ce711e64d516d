"""The Office and RTF analysis of one document with oletools, in memory.

:func:`analyze` takes the bytes of one item and returns ``(finding, signature)`` pairs. It
runs in a worker process of :mod:`edgeward.scanning.office` (oletools is pure Python and a
thread running it cannot be stopped), so it may take its time and may fail: it never raises
on garbage, and a hostile document's worst is to be killed at the time limit.

What is looked at, by container (read from the content, never from the file name alone):

- **OLE2** (.doc, .xls, .ppt and encrypted OOXML): VBA (olevba), XLM macro sheets (olevba's
  BIFF reader), DDE (msodde's Word field and Excel SupBook readers), embedded objects
  (``\\x01Ole10Native`` packages and the ``ObjectPool``/``MBD`` storages of embedded objects).
- **OOXML** (a zip with ``[Content_Types].xml``): VBA projects, DDE fields and ``ddeLink``s
  (msodde), embedded OLE files (oleobj), remote templates and URL-handler targets and macro
  sheets (:mod:`edgeward.scanning.ooxml`). A zip without ``[Content_Types].xml`` is an
  archive: the MIME walk unpacks it, not this.
- **OpenDocument** (a zip with ``META-INF/manifest.xml`` or an ODF ``mimetype``): Basic
  modules and scripts, macros bound to document events, embedded OLE objects, external links
  and DDE (:mod:`edgeward.scanning.odf`), and VBA in OLE members (olevba).
- **RTF**: embedded objects (rtfobj) and DDE fields (msodde).
- **Word/Excel 2003 XML, Flat OPC, MHTML, SYLK**: VBA and XLM (olevba).
- **CSV** (by its declared or true type): DDE formulas (``=cmd|'/c calc'!A1``).

Encryption: an encrypted OLE document is first tried with the passwords Office itself opens
without asking (Excel's ``VelvetSweatshop`` and oletools' list), which malware uses to hide
macros from scanners; what opens is analysed like any document. One that does not open is
``ARCHIVE_ENCRYPTED`` when it uses the legacy .doc/.xls/.ppt encryption (flags and streams
inside the binary formats); encrypted OOXML (``EncryptionInfo`` and ``EncryptedPackage``) is
reported by the MIME walk already (``archives.is_encrypted_office``) and not again here.

Findings (weights in ``config/scores.py``): ``AV_MACRO`` (any VBA), ``AV_MACRO_AUTOEXEC``
(olevba's auto-exec keywords, signature the keyword), ``AV_MACRO_SUSPICIOUS`` (olevba's
suspicious keywords; its "Hex Strings" and "Base64 Strings" counts are left out, because
benign macros are full of colour constants and encoded resources), ``AV_XLM_MACRO``,
``AV_DDE``, ``AV_OLE_OBJECT``, ``AV_EXTERNAL_REFERENCE``, ``ARCHIVE_ENCRYPTED``.

Security: the XML readers oletools uses are replaced by defusedxml's before any parsing
(:mod:`edgeward.scanning.oletools_setup`); nothing is written to disk; signatures are cut to
printable ASCII.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import msoffcrypto
import olefile

from edgeward.scanning.archives import is_encrypted_office
from edgeward.scanning.odf import inspect_odf, is_odf_package
from edgeward.scanning.oletools_setup import (
    MemoryXmlParser,
    VBA_Parser,
    crypto,
    harden_xml,
    lighten_scans,
    msodde,
    oleobj,
    olevba_mod,
    ooxml,
    rtfobj,
)
from edgeward.scanning.ooxml import inspect_package, is_office_package
from edgeward.scanning.xlm import biff8_findings, package_findings

__all__ = ["analyze", "sniff"]

log = logging.getLogger("edgeward.scanning.office")

Finding = tuple[str, str]
MAX_SIGNATURE = 200
MAX_FINDINGS = 50
MAX_NESTING = 2  # encrypted inside encrypted: oletools' own limit is 10; two is plenty for mail
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_NOISE = frozenset({"Hex Strings", "Base64 Strings", "Dridex Strings", "VBA obfuscated Strings"})
_RTF = b"{\\rt"
_OLE = olefile.MAGIC
_ZIP = b"PK\x03\x04"


def sniff(data: bytes, declared_type: str = "", true_type: str = "", name: str = "") -> str | None:
    """The container kind to analyse, or None when the item is no Office or RTF document."""
    head = data[:8]
    if head.startswith(_OLE):
        return "ole"
    if head.startswith(_ZIP):
        return "zip"
    if head.startswith(_RTF):
        return "rtf"
    if head.startswith(b"ID;"):
        return "slk"
    start = data[:4096].lstrip().lower()
    if start.startswith(b"<?xml") and (b"<?mso-application" in start or b"xmlpackage" in start):
        return "xml"
    # A Word or Excel "single file web page" (often renamed .doc): only an attachment, never a
    # whole message or a forwarded one, which look the same and are the walk's to read.
    if name and b"mime-version" in start[:1024] and b"multipart" in start:
        return "mht"
    types_ = (declared_type.lower(), true_type.lower())
    if "text/csv" in types_ or name.lower().endswith(".csv"):
        return "csv"
    return None


def _clean(text: object) -> str:
    return _UNPRINTABLE.sub("?", str(text))[:MAX_SIGNATURE]


def _quietly(step: Callable[[], Iterator[Finding]]) -> list[Finding]:
    """Run one step; a document a step cannot read simply gives that step nothing.

    Running out of memory is not "nothing": it is raised, so the item counts as unanswered
    rather than as a document whose macros were not found."""
    try:
        return list(step())
    except MemoryError:
        raise
    except Exception as exc:  # oletools raises anything on malformed input
        log.debug("office analysis step %s failed: %s", getattr(step, "__name__", step), exc)
        return []


def _vba(data: bytes, name: str) -> Iterator[Finding]:
    parser = VBA_Parser(name or "item", data=data)
    try:
        if parser.type == olevba_mod.TYPE_TEXT:
            return  # plain text "VBA source": keywords in prose are not macros
        if parser.detect_vba_macros():
            yield "AV_MACRO", "vba"
        xlm = parser.detect_xlm_macros()
        if xlm:
            yield "AV_XLM_MACRO", "xlm"
            if parser.type == olevba_mod.TYPE_OLE:
                yield from biff8_findings(parser.xlm_macros or ())
        if parser.contains_vba_macros or xlm:
            for kind, keyword, _ in parser.analyze_macros() or ():
                if kind == "AutoExec":
                    yield "AV_MACRO_AUTOEXEC", _clean(keyword)
                elif kind == "Suspicious" and keyword not in _NOISE and keyword != "XLM macro":
                    yield "AV_MACRO_SUSPICIOUS", _clean(keyword)
    finally:
        parser.close()


def _dde_lines(text: str) -> Iterator[Finding]:
    for line in text.splitlines():
        if line.strip():
            yield "AV_DDE", _clean(line.strip())


def _dde_ole(data: bytes, ole: Any, ppt: bool) -> Iterator[Finding]:
    if msodde.xls_parser.is_xls(data):
        yield from _dde_lines(msodde.process_xls(data))
    elif not ppt and ole is not None:
        fields = msodde.process_doc(ole)
        # Fields of a UTF-16 document come back with a NUL after every character.
        lines = (f.replace("\x00", "") for f in fields.splitlines())
        yield from _dde_lines("\n".join(f for f in lines if msodde.FIELD_DDE_REGEX.match(f)))


def _doctype(data: bytes) -> str | None:
    # ooxml.get_type opens a single XML file by path; its test for one is this regex.
    if zipfile.is_zipfile(io.BytesIO(data)):
        return str(ooxml.get_type(io.BytesIO(data)))
    match = re.search(ooxml.OFFICE_XML_PROGID_REGEX, data[:1024].decode("utf-8", "replace"))
    if match is None:
        return None
    prog_id = match.group(1)
    if prog_id == ooxml.WORD_XML_PROG_ID:
        return str(ooxml.DOCTYPE_WORD_XML)
    return str(ooxml.DOCTYPE_EXCEL_XML) if prog_id == ooxml.EXCEL_XML_PROG_ID else None


def _dde_xml(data: bytes) -> Iterator[Finding]:
    doctype = _doctype(data)
    if doctype == ooxml.DOCTYPE_EXCEL:
        yield from _dde_lines(msodde.process_xlsx(MemoryXmlParser(data)))
    elif doctype in (ooxml.DOCTYPE_EXCEL_XML, ooxml.DOCTYPE_EXCEL_XML2003):
        yield from _dde_lines(msodde.process_excel_xml(MemoryXmlParser(data)))
    elif doctype is not None:
        mode = msodde.FIELD_FILTER_DDE
        yield from _dde_lines(msodde.process_docx(MemoryXmlParser(data), field_filter_mode=mode))


def _dde_rtf(data: bytes) -> Iterator[Finding]:
    text = msodde.process_rtf(io.BytesIO(data[len(msodde.RTF_START) :]), msodde.FIELD_FILTER_DDE)
    yield from _dde_lines(text)


def _csv_cells(text: str, delimiters: str) -> list[str]:
    try:
        results, dialect = msodde.process_csv_dialect(io.StringIO(text, newline=""), delimiters)
    except csv.Error:  # the sniffer gives up on text it cannot split
        return []
    return [str(r) for r in results] + [f"delimiter:{dialect.delimiter}"]


def _dde_csv(data: bytes) -> Iterator[Finding]:
    # msodde.process_csv reads a path; this is its search over text: the sniffed dialect, then,
    # for a small file, every other delimiter and finally the start of the file as one cell.
    text = data.decode("utf-8", errors="replace")
    results = _csv_cells(text, msodde.CSV_DELIMITERS)
    delimiter = results.pop()[len("delimiter:") :] if results else ""
    if not results and len(data) < msodde.CSV_SMALL_THRESH:
        for other in msodde.CSV_DELIMITERS.replace(delimiter, "") if delimiter else msodde.CSV_DELIMITERS:
            results = _csv_cells(text, other)[:-1]
            if results:
                break
        if not results:
            match = msodde.CSV_DDE_FORMAT.match(text[: msodde.CSV_SMALL_THRESH])
            results = [" ".join(match.groups()[:2])] if match else []
    for result in results:
        yield "AV_DDE", _clean(result)


def _ole_objects(ole: Any, where: str) -> Iterator[Finding]:
    for parts in ole.listdir(streams=True, storages=True):
        if parts[-1].lower() == "\x01ole10native":
            try:
                native = oleobj.OleNativeStream(ole.openstream(parts))
                label = native.filename or "unnamed"
                yield "AV_OLE_OBJECT", _clean(f"package:{label}")
            except Exception:
                yield "AV_OLE_OBJECT", _clean(f"package:{'/'.join(parts)}")
        elif len(parts) == 2 and (parts[0] == "ObjectPool" or parts[0].startswith("MBD")):
            clsid = ole.getclsid(parts) if ole.exists(parts) else ""
            yield "AV_OLE_OBJECT", _clean(f"embedded:{where}{'/'.join(parts)} {clsid}".strip())


def _objects_ole(data: bytes, ole: Any, ppt: bool) -> Iterator[Finding]:
    if ppt:
        # PowerPoint keeps embedded objects compressed inside its record stream.
        for index, embedded in enumerate(oleobj.find_ole_in_ppt(data)):
            yield "AV_OLE_OBJECT", f"embedded:ppt-object-{index + 1}"
            yield from _ole_objects(embedded, f"ppt-object-{index + 1}/")
    if ole is not None:
        yield from _ole_objects(ole, "")


def _objects_zip(zf: zipfile.ZipFile) -> Iterator[Finding]:
    for info in zf.infolist():
        if "vbaproject" in info.filename.lower() or info.flag_bits & 0x1:
            continue
        with zf.open(info) as member:
            if member.read(len(_OLE)) != _OLE:
                continue
        yield "AV_OLE_OBJECT", _clean(f"embedded:{info.filename}")
        with zf.open(info) as member, olefile.OleFileIO(member) as ole:
            yield from _ole_objects(ole, info.filename + "/")


def _package(zf: zipfile.ZipFile) -> Iterator[Finding]:
    facts = inspect_package(zf)
    for kind, target in facts.external:
        yield "AV_EXTERNAL_REFERENCE", _clean(f"{kind}:{target.strip()}")
    if facts.macrosheets:
        yield "AV_XLM_MACRO", _clean(f"macrosheet:{facts.macrosheets[0]}")
        yield from package_findings(zf)


def _odf(zf: zipfile.ZipFile, nesting: int) -> Iterator[Finding]:
    facts = inspect_odf(zf)
    yield from facts.findings
    if nesting < MAX_NESTING:
        # An embedded object is a whole Office file (a workbook in a text): its macros, XLM,
        # DDE and packages are the document's.
        for member in facts.ole_members:
            yield from _analyze(zf.read(member), member, "ole", nesting + 1)
    for source in facts.basic.values():
        # olevba's tables name VBA's calls; StarBasic's Shell and CreateObject are the same words.
        for keyword, _ in olevba_mod.detect_autoexec(source):
            yield "AV_MACRO_AUTOEXEC", _clean(keyword)
        for keyword, _ in olevba_mod.detect_suspicious(source):
            if keyword not in _NOISE:
                yield "AV_MACRO_SUSPICIOUS", _clean(keyword)


def _objects_rtf(data: bytes) -> Iterator[Finding]:
    parser = rtfobj.RtfObjParser(data)
    parser.parse()
    for obj in parser.objects:
        if obj.is_package:
            yield "AV_OLE_OBJECT", _clean(f"rtf-package:{obj.filename or 'unnamed'}")
        elif obj.is_ole:
            yield "AV_OLE_OBJECT", _clean(f"rtf-object:{obj.class_name.decode('latin-1', 'replace')}")
        else:
            yield "AV_OLE_OBJECT", "rtf-object:not well-formed"


def _decrypt(data: bytes) -> bytes | None:
    """The document opened with a password Office uses without asking, or None."""
    for number, password in enumerate(crypto.DEFAULT_PASSWORDS, start=1):
        try:
            office = msoffcrypto.OfficeFile(io.BytesIO(data))
            office.load_key(password=password)
            out = io.BytesIO()
            office.decrypt(out)
            # Some formats decrypt with a wrong key without complaint: garbage is no document.
            if sniff(out.getvalue()) in ("ole", "zip"):
                return out.getvalue()
        except Exception as exc:  # a wrong password and a broken file look alike here
            log.debug("default password %d did not open the document: %s", number, exc)
    return None


def _open_ole(data: bytes) -> Any:
    """The OLE file the steps share (each opening its own was a third of the analysis), or None
    when olefile cannot read it: the steps that parse it themselves still say what they can."""
    try:
        return olefile.OleFileIO(data, path_encoding=None)
    except Exception:  # olefile raises anything on a malformed file
        return None


def _is_encrypted(ole: Any) -> bool:
    try:
        return ole is not None and bool(crypto.is_encrypted(ole))
    except Exception:  # a directory crypto cannot read: the other steps say what they can
        return False


def _analyze_ole(data: bytes, name: str, nesting: int) -> list[Finding]:
    found: list[Finding] = []
    ole = _open_ole(data)
    try:
        if _is_encrypted(ole):
            plain = _decrypt(data) if nesting < MAX_NESTING else None
            if plain is None:
                # The walk already reports encrypted OOXML (its EncryptedPackage stream); the
                # legacy .doc/.xls/.ppt encryption it cannot see is reported here.
                walk_reports_it = is_encrypted_office(data)
                return [] if walk_reports_it else [("ARCHIVE_ENCRYPTED", "encrypted office document")]
            inner = sniff(plain)
            if inner is not None and plain != data:
                found += _analyze(plain, name, inner, nesting + 1)
            # RC4-encrypted .xls and .doc keep their VBA in the clear: still look.
        ppt = bool(msodde.is_ppt(data))  # it parses the record streams: once, not per step
        found += _quietly(lambda: _vba(data, name))
        found += _quietly(lambda: _dde_ole(data, ole, ppt))
        found += _quietly(lambda: _objects_ole(data, ole, ppt))
    finally:
        if ole is not None:
            ole.close()
    return found


def _analyze(data: bytes, name: str, kind: str, nesting: int) -> list[Finding]:
    if kind == "ole":
        return _analyze_ole(data, name, nesting)
    found: list[Finding] = []
    if kind == "zip":
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return []
        with zf:
            if is_odf_package(zf):
                found += _quietly(lambda: _odf(zf, nesting))
            elif is_office_package(zf):
                found += _quietly(lambda: _package(zf))
                found += _quietly(lambda: _objects_zip(zf))
            else:
                return []
        found += _quietly(lambda: _vba(data, name))  # olevba reads VBA in OLE members of either
        found += _quietly(lambda: _dde_xml(data))
    elif kind == "rtf":
        found += _quietly(lambda: _objects_rtf(data))
        found += _quietly(lambda: _dde_rtf(data))
    elif kind == "csv":
        found += _quietly(lambda: _dde_csv(data))
    else:  # 2003 XML, Flat OPC, MHTML, SYLK
        found += _quietly(lambda: _vba(data, name))
        if kind == "xml":
            found += _quietly(lambda: _dde_xml(data))
    return found


def analyze(data: bytes, name: str = "", declared_type: str = "", true_type: str = "") -> list[Finding]:
    """The findings of one item, each (finding, signature) once, at most ``MAX_FINDINGS``."""
    harden_xml()
    lighten_scans()
    kind = sniff(data, declared_type, true_type, name)
    if kind is None:
        return []
    unique = dict.fromkeys(_analyze(data, name, kind, 0))
    return list(unique)[:MAX_FINDINGS]
