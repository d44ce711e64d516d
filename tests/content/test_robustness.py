"""Hostile and malformed input: the classifier never raises and stays bounded."""

from __future__ import annotations

import random

import pytest

from edgeward.content import SpamClassifier
from edgeward.content.mime import ParseLimits, parse_message
from edgeward.content.sources import iter_messages

from .conftest import corpus, read

PARSER_ARCHIVES = [
    "cpython-test_email-data.tar.gz",
    "mime4j-testmsgs.tar.gz",
    "gmime-testdata.tar.gz",
    "mimekit-testdata.tar.gz",
    "mail-parser-mails.tar.gz",
]


@pytest.mark.parametrize("archive", PARSER_ARCHIVES)
def test_parser_corpora_classify_without_error(shipped: SpamClassifier, archive: str) -> None:
    path = corpus("parser-tests", archive)
    count = 0
    for name, raw in iter_messages(path):
        verdict = shipped.score(raw)
        assert 0 <= verdict.scl <= 9, name
        assert 1 <= verdict.pcl <= 8, name
        assert 0.0 <= verdict.probability <= 1.0, name
        count += 1
    assert count > 10


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\n\n\n",
        b"From \n",
        b"no headers at all, just text",
        b"Subject: =?utf-8?B?!!!notbase64?= =?x-unknown?q?a=ZZ?=\n\nbody",
        b"Content-Type: multipart/mixed\n\nno boundary parameter",
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Transfer-Encoding: base64\n\n%%%%\n',
        b"Content-Type: text/plain; charset=no-such-charset\n\n\xff\xfe\xfa caf\xe9",
        b"Content-Type: text/html\n\n<a href='http://[::1'>x</a><a href=http://999.1.1.1:99999/>y</a><form",
        b"\xff" * 5000,
    ],
)
def test_malformed_messages(shipped: SpamClassifier, raw: bytes) -> None:
    verdict = shipped.score(raw)
    assert 0 <= verdict.scl <= 9


def test_random_mutations_of_fixtures(shipped: SpamClassifier) -> None:
    rng = random.Random(1234)
    for name in ("ham.eml", "spam.eml", "phish.eml"):
        data = bytearray(read(name))
        for _ in range(60):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 30)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            cut = rng.randrange(len(mutated))
            shipped.score(bytes(mutated[:cut]))
            shipped.score(bytes(mutated))


def test_nesting_and_parts_are_bounded() -> None:
    limits = ParseLimits(max_depth=5, max_parts=20)
    raw = b""
    for depth in range(50):
        raw = (
            f'Content-Type: multipart/mixed; boundary="b{depth}"\n\n--b{depth}\n'.encode()
            + raw
            + f"\n--b{depth}--\n".encode()
        )
    raw = (
        b'Content-Type: multipart/mixed; boundary="top"\n\n'
        + b"".join(b"--top\nContent-Type: text/plain\n\npart\n" for _ in range(100))
        + b"--top\n"
        + raw
        + b"\n--top--\n"
    )
    parsed = parse_message(raw, limits)
    assert "MIME_TOO_MANY_PARTS" in parsed.anomalies
    assert len(parsed.texts) <= 20
    deep = parse_message(raw.split(b"--top\n")[-1], limits)
    assert "MIME_TOO_DEEP" in deep.anomalies


def test_text_per_part_is_bounded() -> None:
    raw = b"Subject: big\n\n" + b"word " * 200_000
    parsed = parse_message(raw, ParseLimits(max_text_bytes_per_part=10_000))
    assert len(parsed.texts[0].text) == 10_000


def test_spamassassin_dev_split_quality(shipped: SpamClassifier) -> None:
    """The shipped model on the held-out dev split (never used for training)."""
    from edgeward.content.evaluate import evaluate_scores

    base = corpus("spamassassin")
    ham = [shipped.score(raw) for _, raw in iter_messages(base / "spamassassin-dev-ham.tar.gz")]
    spam = [shipped.score(raw) for _, raw in iter_messages(base / "spamassassin-dev-spam.tar.gz")]
    report = evaluate_scores([v.probability for v in ham], [v.probability for v in spam], 0.5)
    assert report.roc_auc > 0.995
    assert sum(v.scl >= 7 for v in ham) / len(ham) < 0.01
    assert sum(v.scl >= 7 for v in spam) / len(spam) > 0.9
