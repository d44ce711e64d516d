"""File names from mail and archives, made safe to show and checked for tricks.

A name a sender chose reaches logs, findings, the quarantine view and the attachment filter;
it never becomes a file system path here (nothing in ``scanning`` writes a file). ``escape``
turns every character that could fool a reader or a terminal into a visible escape: control
characters and NUL (``\\x00``), the bidirectional controls that make ``invoice\\u202efdp.exe``
display as ``invoiceexe.pdf``, and the ``!`` that separates archive members in a
``ScanItem.path``. ``hostile`` says why a name is suspicious: a path traversal (``../``), an
absolute path, a NUL or control character, a bidirectional control, or a length over
``MAX_NAME`` (10 KB names are used to overflow fixed buffers in other mail software).

``candidates`` gives every reading of a name a mail client or unpacker might act on: the name
as written, what a C string stops at (the part before a NUL), and the last path component, so
the attachment filter checks ``a.exe\\x00.pdf`` as ``a.exe`` too.
"""

from __future__ import annotations

import re

__all__ = ["MAX_NAME", "candidates", "escape", "hostile"]

MAX_NAME = 255
# Bidirectional embeddings, overrides and isolates, and the invisible marks (Unicode TR 9).
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c")
_UNSAFE = re.compile("[\x00-\x1f\x7f!\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group(0)
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(name: str, limit: int = MAX_NAME) -> str:
    """``name`` with unsafe characters escaped, cut to about ``limit`` characters."""
    cut = len(name) > limit
    text = _UNSAFE.sub(_escape_char, name[:limit])
    return text + "...[cut]" if cut else text


def hostile(name: str) -> str:
    """Why ``name`` is hostile, or ``""`` when it is not."""
    if len(name) > MAX_NAME:
        return f"name of {len(name)} characters"
    if "\x00" in name:
        return "NUL in name"
    if any(ch in _BIDI for ch in name):
        return "bidirectional control in name"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "control character in name"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "path traversal"
    return ""


def candidates(name: str) -> list[str]:
    """Every reading of ``name`` worth checking, most literal first, without duplicates."""
    out: list[str] = []
    for reading in (name, name.split("\x00", 1)[0], re.split(r"[\\/]", name)[-1]):
        for variant in (reading, reading.rstrip(" .")):  # Windows drops trailing dots and spaces
            if variant and variant not in out:
                out.append(variant)
    return out
