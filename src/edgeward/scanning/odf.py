"""What an OpenDocument package (.odt/.ods/.odp/.odg and templates) carries besides its text.

An OpenDocument file is a zip with a ``mimetype`` member and ``META-INF/manifest.xml``
(OASIS ODF 1.3 Part 2). It has no ``[Content_Types].xml``, so the OOXML reader does not take
it, and olevba finds only the VBA of OLE members inside it. What LibreOffice and
OpenOffice run or load lives in these places instead:

- **Macros**: Basic modules under ``Basic/<library>/<module>.xml`` (their source is the XML
  text of ``script:module``) and scripts under ``Scripts/`` (BeanShell, JavaScript, Python).
  Any of them is ``AV_MACRO``; Basic source is also searched with olevba's keyword tables
  (``Shell``, ``CreateObject`` ... give ``AV_MACRO_SUSPICIOUS``; olevba's auto-exec names
  give ``AV_MACRO_AUTOEXEC``).
- **Macros bound to events**: ``script:event-listener`` (document events in ``content.xml``
  and ``styles.xml``) whose target is a ``vnd.sun.star.script:`` macro. Events that fire by
  themselves when the document opens or is created (``dom:load``, ``office:load-finished``,
  ``office:new``, ``office:view-created``, ...) are ``AV_MACRO_AUTOEXEC``; a macro bound to
  anything else (a button, a hyperlink) is ``AV_MACRO``.
- **Embedded OLE objects**: ``draw:object-ole`` and members whose content is an OLE2 file
  (``Object 1``; ``ObjectReplacements/`` only holds their preview pictures). Each is
  ``AV_OLE_OBJECT`` with its class id; OLE packages inside (``\\x01Ole10Native``) are named by
  the caller's OLE reader.
- **External links** that load when the document opens: an object, section, sheet, plug-in
  or frame whose ``xlink:href`` is not a part of the package, and any target with a Windows
  URL-handler scheme (``ms-msdt:``, ``mhtml:``, ``search-ms:``) or a UNC/``file:`` path to
  another host (the credential leak of a linked picture): ``AV_EXTERNAL_REFERENCE``.
- **DDE**: ``office:dde-source``, ``table:dde-link`` and ``text:dde-connection-decl`` name a
  program and topic: ``AV_DDE``.
- **Password protection**: a manifest with ``encryption-data`` (the parts are ciphertext) is
  ``ARCHIVE_ENCRYPTED``, as an encrypted archive or Office file is.

Findings are the Office analysis's own names, so ``[antivirus.office]`` sets what each does
for OpenDocument as for Microsoft formats.

Security: XML is read with defusedxml, streamed (``iterparse``, elements cleared as they
end), and each part read at most ``MAX_PART`` bytes; at most ``MAX_FINDINGS`` are kept.
Nothing is written to disk.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from edgeward.scanning.ooxml import HANDLER_SCHEMES

__all__ = ["OdfFacts", "inspect_odf", "is_odf_package"]

MAX_PART = 64 * 1024 * 1024
MAX_FINDINGS = 50
MAX_SOURCE = 1024 * 1024  # Basic source kept per module for the keyword search
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

XLINK = "{http://www.w3.org/1999/xlink}href"
SCRIPT_NS = "urn:oasis:names:tc:opendocument:xmlns:script:1.0"
# Document events that fire without the reader doing anything but open or create it.
AUTO_EVENTS = frozenset({
    "dom:load", "office:load-finished", "office:new", "office:create", "office:view-created",
    "office:title-changed", "office:visible-area-changed", "dom:focus", "office:focus",
    "office:activate", "office:page-count-change", "office:layout-finished", "office:storage-changed",
})  # fmt: skip
# Elements whose xlink:href loads content into the document when it opens.
LOADING = frozenset({"object", "object-ole", "section-source", "table-source", "plugin",
                     "floating-frame", "applet", "frame"})  # fmt: skip
DDE = frozenset({"dde-source", "dde-link", "dde-connection-decl"})
_REMOTE_FILE = re.compile(r"^\s*(\\\\|//|file://[^/])", re.IGNORECASE)
_SCRIPT_PARTS = ("content.xml", "styles.xml")
_UNREADABLE = (SafeET.ParseError, DefusedXmlException, ValueError, zipfile.BadZipFile, OSError, EOFError)


@dataclass(slots=True)
class OdfFacts:
    """What one package holds, each as ``(finding, signature)``; ``basic`` maps a module's
    part name to its source (cut at ``MAX_SOURCE``) for the keyword search; ``ole_members`` the
    members that are OLE2 files, ``class_ids`` the class id the content gives each."""

    findings: list[tuple[str, str]] = field(default_factory=list)
    basic: dict[str, str] = field(default_factory=dict)
    ole_members: list[str] = field(default_factory=list)
    class_ids: dict[str, str] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)

    def add(self, finding: str, signature: str) -> None:
        if len(self.findings) < MAX_FINDINGS and (finding, signature) not in self.findings:
            self.findings.append((finding, signature))


def is_odf_package(zf: zipfile.ZipFile) -> bool:
    """Whether a zip is an OpenDocument package: its manifest, or its ``mimetype`` says so."""
    names = set(zf.namelist())
    if "[Content_Types].xml" in names:
        return False
    if "META-INF/manifest.xml" in names:
        return True
    if "mimetype" not in names:
        return False
    info = zf.getinfo("mimetype")
    if info.flag_bits & 0x1 or info.file_size > 200:
        return False
    with zf.open(info) as member:
        return member.read(200).startswith(b"application/vnd.oasis.opendocument")


class _Bounded:
    """A reader that ends at ``MAX_PART`` bytes, so a bomb part stops at the bound."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.left = raw, MAX_PART

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size < 0 else min(size, self.left)
        data = self.raw.read(size)
        self.left -= len(data)
        return data


def _local(tag: str) -> tuple[str, str]:
    ns, _, name = tag.rpartition("}")
    return ns.lstrip("{"), name


def _external(href: str) -> bool:
    """Whether a link leaves the package (a package part is a relative path, ``./`` or not)."""
    target = href.strip()
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)) or target.startswith(("/", "\\"))


def _scan_xml(zf: zipfile.ZipFile, info: zipfile.ZipInfo, facts: OdfFacts) -> None:
    with zf.open(info) as raw:
        source = _Bounded(raw)
        for _event, element in SafeET.iterparse(source, events=("end",)):
            ns, name = _local(element.tag)
            href = element.get(XLINK, "")
            if name == "event-listener" and ns == SCRIPT_NS:
                event = element.get(f"{{{SCRIPT_NS}}}event-name", "")
                macro = element.get(f"{{{SCRIPT_NS}}}macro-name", "") or href
                if macro:
                    kind = "AV_MACRO_AUTOEXEC" if event.lower() in AUTO_EVENTS else "AV_MACRO"
                    facts.add(kind, f"odf-event:{event} {macro.strip()}"[:200])
            elif name in DDE:
                app = next((v for k, v in element.attrib.items() if k.endswith("}dde-application")), "")
                topic = next((v for k, v in element.attrib.items() if k.endswith("}dde-topic")), "")
                facts.add("AV_DDE", f"odf-dde:{app} {topic}".strip()[:200])
            if href:
                loads = name in LOADING and _external(href)
                if loads or HANDLER_SCHEMES.match(href) or _REMOTE_FILE.match(href):
                    facts.add("AV_EXTERNAL_REFERENCE", f"{name}:{href.strip()}"[:200])
                elif href.strip().lower().startswith("vnd.sun.star.script:"):
                    facts.add("AV_MACRO", f"odf-link:{href.strip()}"[:200])
            if name == "object-ole" and href:
                clsid = next((v for k, v in element.attrib.items() if k.endswith("}class-id")), "")
                facts.class_ids[href.strip().removeprefix("./")] = clsid
            element.clear()


def _basic_source(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    """The text of a Basic module part (``script:module``'s content), or the part as text."""
    with zf.open(info) as raw:
        data = _Bounded(raw).read(MAX_SOURCE)
    try:
        return "".join(SafeET.fromstring(data).itertext())
    except (SafeET.ParseError, DefusedXmlException, ValueError):
        return data.decode("utf-8", "replace")


def _members(zf: zipfile.ZipFile, facts: OdfFacts) -> Iterator[zipfile.ZipInfo]:
    for info in zf.infolist():
        name = info.filename
        if info.flag_bits & 0x1:
            facts.unreadable.append(name)  # a zip-encrypted member (the walk reports it)
            continue
        lowered = name.lower()
        if lowered.startswith("basic/") and lowered.endswith(".xml"):
            if lowered.rsplit("/", 1)[-1] not in ("script-lb.xml", "script-lc.xml", "dialog-lb.xml",
                                                    "dialog-lc.xml"):  # fmt: skip
                facts.add("AV_MACRO", f"odf-basic:{name}"[:200])
                facts.basic[name] = _basic_source(zf, info)
        elif lowered.startswith("scripts/") and not name.endswith("/"):
            facts.add("AV_MACRO", f"odf-script:{name}"[:200])
        yield info


def _encrypted(zf: zipfile.ZipFile) -> bool:
    """Whether the manifest says parts are encrypted (ODF's own password protection)."""
    try:
        info = zf.getinfo("META-INF/manifest.xml")
        with zf.open(info) as raw:
            for _event, element in SafeET.iterparse(_Bounded(raw), events=("end",)):
                if _local(element.tag)[1] == "encryption-data":
                    return True
                element.clear()
    except (KeyError, *_UNREADABLE):
        return False
    return False


def inspect_odf(zf: zipfile.ZipFile) -> OdfFacts:
    """The findings of one OpenDocument package (see the module docstring)."""
    facts = OdfFacts()
    if _encrypted(zf):
        # Its content and macros are ciphertext: nothing below can be read, as with an
        # encrypted archive, and the same finding (and [antivirus.office] encrypted) applies.
        facts.add("ARCHIVE_ENCRYPTED", "encrypted OpenDocument")
    for info in _members(zf, facts):
        if info.filename in _SCRIPT_PARTS or info.filename.endswith("/content.xml"):
            try:
                _scan_xml(zf, info, facts)
            except _UNREADABLE:
                facts.unreadable.append(info.filename)
            continue
        if info.filename.startswith("ObjectReplacements/") or info.file_size < len(_OLE):
            continue
        with zf.open(info) as stream:
            if stream.read(len(_OLE)) == _OLE:
                facts.ole_members.append(info.filename)
    # After the XML, which names the class of each object the document shows.
    for part in facts.ole_members:
        facts.add("AV_OLE_OBJECT", f"odf-object:{part} {facts.class_ids.get(part, '')}".strip()[:200])
    return facts
