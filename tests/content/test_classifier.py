"""SpamClassifier on small hand-written messages: SCL, PCL, rules, custom words."""

from __future__ import annotations

import pytest

from edgeward.content import ContentVerdict, CustomWords, SpamClassifier, scl_from_probability
from edgeward.content.classifier import SCL_CUTS

from .conftest import read


def test_gtube_is_scl_9(shipped: SpamClassifier) -> None:
    verdict = shipped.score(read("gtube.eml"))
    assert verdict.scl == 9
    assert verdict.findings[0][0] == "GTUBE"


def test_gtube_inside_base64_part(shipped: SpamClassifier) -> None:
    import base64

    body = base64.encodebytes(b"hello\n" + read("gtube.eml").split(b"\n\n", 1)[1]).decode()
    raw = (
        "From: a@example.org\nSubject: hi\nMIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n"
        f"Content-Transfer-Encoding: base64\n\n{body}\n--XX--\n"
    ).encode()
    assert shipped.score(raw).scl == 9


def test_clear_ham_is_low(shipped: SpamClassifier) -> None:
    verdict = shipped.score(read("ham.eml"))
    assert isinstance(verdict, ContentVerdict)
    assert verdict.scl <= 2
    assert verdict.probability < 0.1
    assert verdict.pcl <= 3


def test_clear_spam_is_rejected(shipped: SpamClassifier) -> None:
    verdict = shipped.score(read("spam.eml"))
    assert verdict.scl >= 7
    assert verdict.probability > 0.9
    assert any(name.startswith("model:") and weight > 0 for name, weight in verdict.findings)


def test_phishing_gets_high_pcl(shipped: SpamClassifier) -> None:
    verdict = shipped.score(read("phish.eml"))
    names = {name for name, _ in verdict.findings}
    assert verdict.pcl >= 7
    assert {"PHISH_LINK_TEXT_MISMATCH", "PHISH_LOOKALIKE_DOMAIN", "PHISH_BRAND_DISPLAY_NAME"} <= names
    assert verdict.scl >= 7


def test_mismatched_link_alone_is_suspicious(shipped: SpamClassifier) -> None:
    raw = (
        b"From: Support <help@shop.example.com>\nSubject: your order\nMIME-Version: 1.0\n"
        b"Content-Type: text/html\n\n<p>Track it at "
        b'<a href="http://203.0.113.9.example.net/x">https://www.shop.example.com/orders</a></p>\n'
    )
    clean = raw.replace(b"http://203.0.113.9.example.net/x", b"https://shop.example.com/orders/1")
    assert shipped.score(raw).pcl >= 4
    assert shipped.score(clean).pcl <= 3


def test_custom_words_override_model() -> None:
    words = CustomWords(good=["Project   Falcon"], bad=["cheap rolex"])
    classifier = SpamClassifier.load(words=words, learning=False)
    ham = read("ham.eml").replace(b"Thanks,", b"CHEAP\n Rolex, thanks,")
    spam = read("spam.eml").replace(b"Dear Friend", b"Dear project falcon team")
    bad = classifier.score(ham)
    assert bad.scl == 9 and bad.findings[0][0] == "CUSTOM_BAD_WORD:CHEAP\n Rolex"
    good = classifier.score(spam)
    assert good.scl == 0 and good.findings[0][0].startswith("CUSTOM_GOOD_WORD")
    # Whole words only: "rolexes" is not "rolex".
    assert classifier.score(read("ham.eml").replace(b"Thanks", b"cheap rolexes")).scl < 9


def test_good_words_win_over_bad_words() -> None:
    words = CustomWords(good=["falcon"], bad=["falcon report", "free"])
    assert words.match("the Falcon report is free") == ("good", "Falcon")


def test_custom_words_limits() -> None:
    with pytest.raises(ValueError, match="at most 800"):
        CustomWords(bad=[f"word{i}" for i in range(801)])
    assert len(CustomWords(bad=[f"word{i}" for i in range(800)]).bad) == 800
    assert CustomWords(bad=["a.b*c(d"]).match("x a.b*c(d y") == ("bad", "a.b*c(d")


@pytest.mark.parametrize(("probability", "scl"), [(0.0, 0), (SCL_CUTS[0], 1), (SCL_CUTS[6], 7), (1.0, 9)])
def test_scl_mapping(probability: float, scl: int) -> None:
    assert scl_from_probability(probability) == scl
    assert scl_from_probability(SCL_CUTS[6] - 1e-9) == 6


def test_verdict_is_frozen(shipped: SpamClassifier) -> None:
    verdict = shipped.score(read("ham.eml"))
    with pytest.raises(AttributeError):
        verdict.scl = 9  # type: ignore[misc]
