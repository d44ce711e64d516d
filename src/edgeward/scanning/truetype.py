"""The MIME type of content, read from the content itself (libmagic), never from a name.

libmagic (Debian ``libmagic1``, through ``python-magic``) is what ``file(1)`` uses: its
database tells a PE executable (``application/x-dosexec``) from a renamed PDF, an OOXML
document from a plain zip, and a script from text, which a signature list of a few hundred
prefixes cannot. It looks at the first ``SNIFF_BYTES`` only, so the time spent on one item is
bounded whatever its size. ``python-magic``'s ``Magic`` holds a lock around each call, so one
instance serves the walk wherever it runs (on the loop or in a worker thread).

Cost: most of libmagic's time on text goes to its text tests (a few hundred patterns for
scripts, markup and source languages), about 1 ms for a 2 KB body against 0.2 ms for all the
rest, and 5 ms for a 300 KB text file. ``true_type(data, text_subtype=False)`` skips them: every
binary signature, the archive, CDF (MSI), ELF, JSON, CSV, RTF and SVG tests still run and give
libmagic's own answer, and content they do not name is ``text/plain`` when libmagic reads it as
text (its encoding test says so), else ``application/octet-stream`` as before. The gateway's
walk asks only for that (``WalkLimits.text_subtypes``) and marks such an item ``coarse``; the
consumers that tell text subtypes apart (YARA rules that read ``filetype``, a true-type list or a
transport rule naming a text type) call ``refine`` for the items they look at, so the text tests
run only where something reads their answer.

Security: libmagic is C code reading hostile bytes; it is given a bounded buffer, never a
file name, and its answer only ever makes the filter stricter (a type it cannot name is
``application/octet-stream``, which the walk still scans and unpacks by content).
"""

from __future__ import annotations

import functools

import magic

from edgeward.ports import ScanItem

__all__ = ["SNIFF_BYTES", "TEXT", "refine", "true_type"]

SNIFF_BYTES = 256 * 1024
TEXT = "text/plain"
_UNKNOWN = "application/octet-stream"
NO_CHECK_TEXT = 0x0020000  # libmagic's MAGIC_NO_CHECK_TEXT (python-magic's stubs lack it)


@functools.cache
def _magic() -> magic.Magic:
    return magic.Magic(mime=True)


@functools.cache
def _no_text_tests() -> magic.Magic:
    # The charset tells text ("us-ascii", "utf-8" ...) from bytes ("binary") when no test named it.
    found = magic.Magic(mime=True, mime_encoding=True)
    magic.magic_setflags(found.cookie, found.flags | NO_CHECK_TEXT)
    return found


def true_type(data: bytes, *, text_subtype: bool = True) -> str:
    """The MIME type libmagic reads from ``data`` (empty data: ``application/x-empty``);
    without ``text_subtype``, text no binary test names is ``text/plain`` (module docstring)."""
    if not data:
        return "application/x-empty"
    try:
        if text_subtype:
            return str(_magic().from_buffer(data[:SNIFF_BYTES])).strip().lower()
        kind, _, charset = str(_no_text_tests().from_buffer(data[:SNIFF_BYTES])).lower().partition(";")
    except magic.MagicException:
        return _UNKNOWN
    kind = kind.strip()
    if kind == _UNKNOWN and charset.strip() not in ("charset=binary", ""):
        return TEXT
    return kind


def refine(item: ScanItem) -> str:
    """The item's true type with its text subtype (``text/html``, ``text/x-shellscript`` ...)
    where the walk read it ``coarse``; otherwise the type it has."""
    if not item.coarse:
        return item.true_type
    return true_type(item.data)
