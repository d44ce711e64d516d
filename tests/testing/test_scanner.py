"""Conformance suite of :class:`edgeward.ports.Scanner`: ``ClamdScanner`` against a real clamd
(private instance, database built by the test) and the shipped ``FakeScanner`` loaded with the
same signatures give the same answers and the same failures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeward.ports import ScanEngineError, ScanItem, Scanner
from edgeward.scanning import ItemTooLarge
from edgeward.scanning.clamd import ClamdScanner
from edgeward.testing.scanner import FakeScanner
from tests.scanning.clamd import (
    CLAMD,
    EICAR,
    EICAR_BODY_NAME,
    EICAR_HASH_NAME,
    PATTERN_NAME,
    STREAM_MAX,
    TEST_PATTERN,
    Clamd,
    start_clamd,
)


@dataclass
class Subject:
    scanner: Scanner
    take_down: object  # () -> None: make the engine unreachable
    bring_up: object


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    if CLAMD is None:
        pytest.skip("clamd is not installed (scripts/install-test-deps.sh)")
    server = start_clamd(tmp_path_factory.mktemp("clamd"))
    yield server
    server.stop()


@pytest.fixture(params=["clamd", "fake"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    if request.param == "clamd":
        server: Clamd = request.getfixturevalue("clamd")
        real = ClamdScanner(str(server.socket), timeout=30, chunk_size=4096, max_stream=STREAM_MAX)
        # Down: the same scanner pointed at a socket nobody serves.
        gone = str(tmp_path / "gone.sock")
        yield Subject(real, lambda: setattr(real, "address", gone),
                      lambda: setattr(real, "address", str(server.socket)))  # fmt: skip
        return
    fake = FakeScanner({EICAR: f"{EICAR_BODY_NAME}.UNOFFICIAL", TEST_PATTERN: f"{PATTERN_NAME}.UNOFFICIAL"},
                       name="fake", max_stream=STREAM_MAX)  # fmt: skip
    yield Subject(fake, lambda: setattr(fake, "down", True), lambda: setattr(fake, "down", False))


def signature_base(signature: str) -> str:
    return signature.removesuffix(".UNOFFICIAL")


def test_eicar_is_found_with_its_name_and_path(subject: Subject) -> None:
    hits = asyncio.run(subject.scanner.scan([ScanItem(EICAR, "2", "eicar.com")]))
    assert len(hits) == 1
    hit = hits[0]
    assert hit.name == "AV_INFECTED" and hit.engine == subject.scanner.name and hit.path == "2"
    assert signature_base(hit.signature) in (EICAR_BODY_NAME, EICAR_HASH_NAME)


def test_each_item_is_answered_for_on_its_own(subject: Subject) -> None:
    items = [
        ScanItem(b"Hello, nothing to see here.\r\n", "1"),
        ScanItem(b"prefix " + TEST_PATTERN + b" suffix", "2"),
        ScanItem(b"some text\n" + EICAR + b"\n", "3"),
    ]
    hits = asyncio.run(subject.scanner.scan(items))
    found = [(h.path, signature_base(h.signature)) for h in hits]
    assert found == [("2", PATTERN_NAME), ("3", EICAR_BODY_NAME)]


def test_clean_content_is_clean(subject: Subject) -> None:
    items = [ScanItem(b"", "1"), ScanItem(b"plain text\r\n" * 99, "2"), ScanItem(bytes(range(256)) * 9, "3")]
    assert asyncio.run(subject.scanner.scan(items)) == []


def test_chunking_does_not_hide_a_pattern_across_chunk_borders(subject: Subject) -> None:
    # 4 KB chunks for clamd: the pattern straddles the border between the first two.
    data = b"a" * (4096 - 10) + TEST_PATTERN + b"b" * 5000
    hits = asyncio.run(subject.scanner.scan([ScanItem(data, "1")]))
    assert [signature_base(h.signature) for h in hits] == [PATTERN_NAME]


def test_an_item_over_the_limit_raises_never_clean(subject: Subject) -> None:
    with pytest.raises(ItemTooLarge):
        asyncio.run(subject.scanner.scan([ScanItem(b"x", "1"), ScanItem(b"a" * (STREAM_MAX + 1), "2")]))


def test_an_engine_that_is_down_raises(subject: Subject) -> None:
    subject.take_down()  # type: ignore[operator]
    try:
        with pytest.raises(ScanEngineError) as caught:
            asyncio.run(subject.scanner.scan([ScanItem(b"hello", "1")]))
        assert not isinstance(caught.value, ItemTooLarge)
        status = asyncio.run(subject.scanner.status())
        assert not status.healthy and status.detail and status.engine == subject.scanner.name
    finally:
        subject.bring_up()  # type: ignore[operator]


def test_status_names_the_engine_and_its_version(subject: Subject) -> None:
    status = asyncio.run(subject.scanner.status())
    assert status.healthy and status.engine == subject.scanner.name and status.version
    # Custom databases carry no publication date; an engine that cannot tell says None.
    assert status.signatures_at is None or status.signatures_at > 0
