"""What an Office Open XML package says about itself: remote parts it loads and macro sheets.

A .docx/.xlsx/.pptx is a zip of XML parts tied together by relationship parts (``*.rels``,
ECMA-376 Part 2, Open Packaging Conventions). Two attacks live in those relationships rather
than in any macro, so olevba cannot see them:

- **Remote templates and objects**: a relationship with ``TargetMode="External"`` whose type
  is an attached template, an OLE object, a frame or a sub-document makes Office fetch that
  URL when the file opens (template injection, used to pull a macro document past a gateway
  that only scans attachments).
- **Protocol-handler targets**: a target with the ``mhtml:`` scheme (CVE-2021-40444) or
  ``ms-msdt:`` ("Follina", CVE-2022-30190) starts code through a URL handler of Windows.
  These count whatever the relationship type or target mode, as do the other ``ms-*:`` and
  ``search-ms:`` handlers abused the same way.

External hyperlinks are ordinary document content and are not reported unless their target
uses one of those schemes.

Excel 4 (XLM) macro sheets inside a package (``xl/macrosheets/``, or a relationship of type
``xlMacrosheet``/``xlIntlMacrosheet``) are reported here too: olevba only finds XLM in the
binary .xls format.

Security: every part is parsed with defusedxml (no DTD entities, no external entities, so no
XXE and no "billion laughs"), relationship parts are read at most ``MAX_PART`` bytes each and
at most ``MAX_RELS`` of them, so a package that is a zip bomb cannot make this step expand it.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

__all__ = ["PackageFacts", "inspect_package", "is_office_package"]

MAX_RELS = 200
MAX_PART = 1024 * 1024

# The relationship types (the last segment of the Type URI) that fetch and load content from
# an external target when the document opens.
LOADING_TYPES = frozenset({"attachedtemplate", "oleobject", "frame", "subdocument", "externallinkpath"})
HANDLER_SCHEMES = re.compile(r"^\s*(mhtml|ms-[a-z0-9-]+|search-ms)\s*:", re.IGNORECASE)
_MACROSHEET = re.compile(r"(^|/)(macrosheets|intlmacrosheets)/", re.IGNORECASE)


@dataclass(slots=True)
class PackageFacts:
    """``external``: (relationship type, target) pairs that load remote content or start a URL
    handler; ``macrosheets``: the part names of Excel 4 macro sheets; ``unreadable``: parts
    that could not be parsed (hostile XML included)."""

    external: list[tuple[str, str]] = field(default_factory=list)
    macrosheets: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def is_office_package(zf: zipfile.ZipFile) -> bool:
    """Whether a zip is an OPC package (it has ``[Content_Types].xml``), not a plain archive."""
    try:
        zf.getinfo("[Content_Types].xml")
    except KeyError:
        return False
    return True


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _read_bounded(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes | None:
    if info.flag_bits & 0x1:  # an encrypted member cannot be read without its password
        return None
    with zf.open(info) as part:
        data = part.read(MAX_PART + 1)
    return data if len(data) <= MAX_PART else None


def inspect_package(zf: zipfile.ZipFile) -> PackageFacts:
    facts = PackageFacts()
    rels = 0
    for info in zf.infolist():
        name = info.filename
        if _MACROSHEET.search(name):
            facts.macrosheets.append(name)
        if not name.lower().endswith(".rels"):
            continue
        rels += 1
        if rels > MAX_RELS:
            facts.unreadable.append(name)
            continue
        try:
            data = _read_bounded(zf, info)
            root = SafeET.fromstring(data) if data is not None else None
        except (zipfile.BadZipFile, OSError, EOFError, SafeET.ParseError, DefusedXmlException, ValueError):
            root = None
        if root is None:
            facts.unreadable.append(name)
            continue
        for rel in root.iter():
            if _local(rel.tag) != "Relationship":
                continue
            kind = rel.get("Type", "").rsplit("/", 1)[-1]
            target = rel.get("Target", "")
            external = rel.get("TargetMode", "").strip().lower() == "external"
            if HANDLER_SCHEMES.match(target) or (external and kind.lower() in LOADING_TYPES):
                facts.external.append((kind, target))
            if "macrosheet" in kind.lower():
                facts.macrosheets.append(f"{name}:{target}")
    return facts
