"""Reading raw messages from files, folders, mbox files and ``.tar.gz`` archives.

This module owns :func:`iter_messages`, used by the training, evaluation and classification
commands. Every item is ``(name, raw bytes)``; ``name`` is the file path, ``archive.tar.gz:member``
or ``mbox#n``. Files larger than ``max_bytes`` are truncated (the classifier reads at most that
much anyway), archive members that are not regular files are skipped (no links, no devices), and
nothing is ever extracted to disk.

A file is treated as an mbox when it starts with ``From `` and holds more than one ``From `` line
preceded by a blank line; a single message with an mbox envelope line stays one message.
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["count_messages", "iter_messages", "label_from_path"]

MAX_BYTES = 4_000_000
_LABEL_WORD = re.compile(r"(?<![a-z])(spam|ham)(?![a-z])")
_MBOX_SPLIT = re.compile(rb"\r?\n\r?\n(?=From [^\r\n]*\d\d:\d\d)")


def label_from_path(path: str) -> bool | None:
    """``True`` for spam, ``False`` for ham, from a path naming "spam" or "ham" as a word
    (``spam/``, ``train-ham.tar.gz``, ``easy_ham``; not ``graham``); ``None`` if it names neither
    or both. The last path component that names one wins."""
    for part in reversed(re.split(r"[/\\]", path.lower())):
        words = set(_LABEL_WORD.findall(part))
        if words == {"spam"}:
            return True
        if words == {"ham"}:
            return False
    return None


def _split_mbox(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    if not data.startswith(b"From "):
        yield name, data
        return
    pieces = _MBOX_SPLIT.split(data)
    if len(pieces) == 1:
        yield name, data
        return
    for i, piece in enumerate(pieces):
        # Undo mboxrd ">From " quoting of body lines.
        yield f"{name}#{i}", re.sub(rb"(?m)^>(>*From )", rb"\1", piece)


def _iter_tar(path: Path, max_bytes: int) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            if not member.isfile():
                continue
            handle = archive.extractfile(member)
            if handle is None:
                continue
            data = handle.read(max_bytes)
            if member.name.rsplit("/", 1)[-1].startswith("."):
                continue
            yield from _split_mbox(f"{path}:{member.name}", data)


def _iter_file(path: Path, max_bytes: int) -> Iterator[tuple[str, bytes]]:
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        yield from _iter_tar(path, max_bytes)
        return
    with path.open("rb") as handle:
        data = handle.read(max_bytes)
    yield from _split_mbox(str(path), data)


def iter_messages(path: str | os.PathLike[str], max_bytes: int = MAX_BYTES) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, raw)`` for every message under ``path`` in a stable (sorted) order."""
    root = Path(path)
    if root.is_dir():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                if not filename.startswith("."):
                    yield from _iter_file(Path(dirpath) / filename, max_bytes)
    else:
        yield from _iter_file(root, max_bytes)


def count_messages(path: str | os.PathLike[str]) -> int | None:
    """Number of files under ``path`` (a cheap estimate for progress bars); ``None`` for archives."""
    root = Path(path)
    if root.is_dir():
        return sum(len([f for f in files if not f.startswith(".")]) for _, _, files in os.walk(root))
    if root.name.lower().endswith((".tar.gz", ".tgz", ".tar")):
        return None
    return 1
