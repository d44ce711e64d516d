"""The MIME type of content, read from the content itself (libmagic), never from a name.

libmagic (Debian ``libmagic1``, through ``python-magic``) is what ``file(1)`` uses: its
database tells a PE executable (``application/x-dosexec``) from a renamed PDF, an OOXML
document from a plain zip, and a script from text, which a signature list of a few hundred
prefixes cannot. It looks at the first ``SNIFF_BYTES`` only, so the time spent on one item is
bounded whatever its size. ``python-magic``'s ``Magic`` holds a lock around each call, so one
instance serves the walk wherever it runs (on the loop or in a worker thread).

Security: libmagic is C code reading hostile bytes; it is given a bounded buffer, never a
file name, and its answer only ever makes the filter stricter (a type it cannot name is
``application/octet-stream``, which the walk still scans and unpacks by content).
"""

from __future__ import annotations

import functools

import magic

__all__ = ["SNIFF_BYTES", "true_type"]

SNIFF_BYTES = 256 * 1024


@functools.cache
def _magic() -> magic.Magic:
    return magic.Magic(mime=True)


def true_type(data: bytes) -> str:
    """The MIME type libmagic reads from ``data`` (empty data: ``application/x-empty``)."""
    if not data:
        return "application/x-empty"
    try:
        return str(_magic().from_buffer(data[:SNIFF_BYTES])).strip().lower()
    except magic.MagicException:
        return "application/octet-stream"
