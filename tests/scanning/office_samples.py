"""The oletools test documents, read from the shared corpus tarball in memory (never copied).

The tarball is ``../shared/corpora/attachments/oletools-test-data.tar.gz`` (oletools' own
``tests/test-data``); its ``.zip`` samples are zipped with oletools' test password so that
scanners on the way do not eat them, and are opened here in memory too.
"""

from __future__ import annotations

import functools
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from edgeward.ports import ScanItem

# Next to the repository, or next to a folder above it (a work tree of it).
CORPORA = next(
    (up / "shared" / "corpora" for up in Path(__file__).resolve().parents[2].parents
     if (up / "shared" / "corpora").is_dir()),
    Path(__file__).resolve().parents[2].parent / "shared" / "corpora",
)  # fmt: skip
TARBALL = CORPORA / "attachments" / "oletools-test-data.tar.gz"
PREFIX = "oletools-test-data/tests/test-data/"
ZIP_PASSWORD = b"infected-test"


@functools.cache
def _members() -> dict[str, bytes]:
    if not TARBALL.exists():
        # Called while parametrising at collection too, where only a module-level skip is allowed.
        pytest.skip(
            f"shared corpus not available at {TARBALL} (it lives outside the repository)",
            allow_module_level=True,
        )
    out: dict[str, bytes] = {}
    with tarfile.open(TARBALL) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith(PREFIX):
                handle = tar.extractfile(member)
                assert handle is not None
                out[member.name[len(PREFIX) :]] = handle.read()
    return out


def sample(name: str) -> bytes:
    """One document by its path under test-data; ``x.doc.zip`` gives the document inside."""
    data = _members()[name]
    if name.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return zf.read(zf.namelist()[0], pwd=ZIP_PASSWORD)
    return data


def names(folder: str) -> list[str]:
    return sorted(n for n in _members() if n.startswith(folder + "/"))


def item(name: str) -> ScanItem:
    filename = name.rsplit("/", 1)[-1].removesuffix(".zip")
    return ScanItem(sample(name), f"2/{filename}", filename)
