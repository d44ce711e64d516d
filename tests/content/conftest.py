"""Shared fixtures for the content classifier tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.content import SpamClassifier

DATA = Path(__file__).parent / "data"
CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"


def read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def corpus(*parts: str) -> Path:
    """A path under ``<repo>/../shared/corpora``; skips the test when it is absent."""
    path = CORPORA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared corpus not available at {path} (it lives outside the repository)")
    return path


@pytest.fixture(scope="session")
def shipped() -> SpamClassifier:
    """The default model shipped in the package; tests must not learn into it."""
    return SpamClassifier.load(learning=False)
