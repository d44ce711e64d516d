"""oletools as the Office analysis uses it: imported quietly, reading XML safely and from memory,
silent in the logs, and without olevba's keyword loops on empty code.

Every function here patches oletools' modules in the process that calls it (the Office worker)
and is idempotent; :func:`edgeward.scanning.office_analysis.analyze` calls them before each
document, so a caller that forgot is still safe.
"""

from __future__ import annotations

import functools
import io
import logging
import types
import warnings
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

from defusedxml import ElementTree as SafeET

with warnings.catch_warnings():
    # oletools 0.60.2 calls pyparsing's pre-3.0 names, which pyparsing 3.3 warns about on import.
    warnings.simplefilter("ignore", DeprecationWarning)
    from oletools import crypto, msodde, oleobj, ooxml, rtfobj
    from oletools import olevba as olevba_mod
    from oletools.olevba import VBA_Parser

__all__ = [
    "MemoryXmlParser", "VBA_Parser", "crypto", "harden_xml", "lighten_scans", "msodde", "oleobj",
    "olevba_mod", "ooxml", "rtfobj",
]  # fmt: skip


class MemoryXmlParser(ooxml.XmlParser):  # type: ignore[misc]
    """oletools' OOXML reader over bytes: its own opens single XML files by path."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        super().__init__(io.BytesIO(data))

    def is_single_xml(self) -> bool:
        return not zipfile.is_zipfile(io.BytesIO(self._data))

    def iter_files(self, args: Any = None) -> Iterator[tuple[str | None, Any]]:
        if self.is_single_xml():
            yield None, io.BytesIO(self._data)
            self.did_iter_all = True
        else:
            yield from super().iter_files(args)


def harden_xml() -> None:
    """Make oletools parse XML with defusedxml and read OOXML from memory (idempotent).

    oletools reads XML through ``xml.etree`` (``ooxml.iterparse``, ``olevba.fromstring``); the
    standard library does not resolve external entities but still expands internal ones.
    msodde builds its own ``ooxml.XmlParser`` from a path; it is handed a reader over bytes
    instead (:class:`MemoryXmlParser` passes through, any other argument is left alone).
    """
    shim = types.SimpleNamespace(
        iterparse=SafeET.iterparse, fromstring=SafeET.fromstring, ParseError=SafeET.ParseError
    )
    ooxml.ET = shim
    olevba_mod.ET = shim
    if not isinstance(msodde.ooxml, types.SimpleNamespace):
        real = ooxml.XmlParser

        def parser_for(source: Any) -> Any:
            return source if isinstance(source, MemoryXmlParser) else real(source)

        msodde.ooxml = types.SimpleNamespace(**{**vars(ooxml), "XmlParser": parser_for})
    # oletools logs every oddity of a hostile file at WARNING or above, one line per stream.
    for name in ("olevba", "msodde", "oleobj", "rtfobj", "ooxml", "crypto", "xls_parser", "ftguess"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    logging.getLogger("olefile").setLevel(logging.CRITICAL + 1)


def _nothing_in_nothing(detect: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
    """``detect`` answering ``[]`` for empty code without its keyword loop.

    olevba's scan runs ``detect_autoexec`` and ``detect_suspicious`` on the code and on six
    decoded variants (hex, base64, Dridex ...), most of them empty; each call builds and runs a
    regex per keyword (about 200), a fifth of a whole analysis. No keyword matches empty code
    (``tests/scanning/test_office_analysis.py`` holds olevba to that), so the answer is the same.
    """
    if getattr(detect, "_edgeward_light", False):
        return detect

    @functools.wraps(detect)
    def light(code: str, obfuscation: str | None = None) -> list[Any]:
        return detect(code, obfuscation) if code else []

    light._edgeward_light = True  # type: ignore[attr-defined]
    return light


def lighten_scans() -> None:
    """Let olevba's keyword scans skip empty code (:func:`_nothing_in_nothing`; idempotent)."""
    olevba_mod.detect_autoexec = _nothing_in_nothing(olevba_mod.detect_autoexec)
    olevba_mod.detect_suspicious = _nothing_in_nothing(olevba_mod.detect_suspicious)
