"""Golden transcripts through the SMTP core, fed whole and byte by byte (same bytes out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.smtp.smtp_transcript import load, play, transcripts

FOLDER = Path(__file__).parent / "transcripts"
FILES = list(transcripts(FOLDER))


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_transcript_whole_writes(path: Path) -> None:
    play(load(path))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("split", [1, 2, 3, 7])
def test_transcript_split_writes(path: Path, split: int) -> None:
    play(load(path), split=split)
