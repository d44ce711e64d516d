"""Scores must not depend on transport or corpus artefacts, only on the message itself."""

from __future__ import annotations

import re

import pytest

from edgeward.content import SpamClassifier

from .conftest import read

TRACE = (
    b"Return-Path: <owner-list@lists.example.org>\n"
    b"Delivered-To: zzzz@localhost.spamassassin.taint.org\n"
    b"Received: from phobos [127.0.0.1]\n\tby localhost with IMAP (fetchmail-5.9.0)\n"
    b"Received: from lugh.tuatha.org (root@lugh.tuatha.org [194.125.145.45]) by\n"
    b"    dogma.slashnull.org (8.11.6/8.11.6) with ESMTP id g7MCJiZ06043\n"
    b"X-Spam-Status: No, hits=-5.0 required=5.0 tests=AWL,BAYES_00\n"
    b"X-Spam-Level: *****\n"
    b"X-Spam-Flag: YES\n"
    b"X-Virus-Scanned: by amavisd-new\n"
    b"X-Razor-Id: 1234567890abcdef\n"
    b"X-Pyzor: Reported 0 times.\n"
    b"X-Authentication-Warning: lugh.tuatha.org: Host [67.104.83.251] claimed to be x\n"
)


def _variants(raw: bytes) -> dict[str, bytes]:
    head, body = raw.split(b"\n\n", 1)
    return {
        "plain": raw,
        "crlf": raw.replace(b"\n", b"\r\n"),
        "mbox_from": b"From someone@example.org  Thu Aug 22 13:27:39 2002\n" + raw,
        "mbox_from_crlf": (b"From someone@example.org  Thu Aug 22 13:27:39 2002\n" + raw).replace(
            b"\n", b"\r\n"
        ),
        "upstream_headers": TRACE + raw,
        "upstream_headers_after": head + b"\n" + TRACE + b"\n" + body,
        "obfuscated": _obfuscate(raw),
    }


def _obfuscate(raw: bytes) -> bytes:
    """What the SpamAssassin corpus did to addresses: recipients and addresses in text."""
    head, body = raw.split(b"\n\n", 1)
    head = re.sub(rb"(?m)^To: .*$", b"To: zzzz@spamassassin.taint.org", head)
    body = body + b"\n\n-- \nMail me: yyyy@example.sourceforge.net or zzzz@spamassassin.taint.org\n"
    return head + b"\n\n" + body


def _normal_addresses(raw: bytes) -> bytes:
    head, body = raw.split(b"\n\n", 1)
    head = re.sub(rb"(?m)^To: .*$", b"To: jane.doe@corp.example.com", head)
    body = body + b"\n\n-- \nMail me: jane@real-company.com or jdoe@another.example.net\n"
    return head + b"\n\n" + body


@pytest.mark.parametrize("name", ["ham.eml", "spam.eml", "phish.eml"])
def test_transport_and_upstream_headers_do_not_change_the_score(shipped: SpamClassifier, name: str) -> None:
    verdicts = {label: shipped.score(raw) for label, raw in _variants(read(name)).items()}
    reference = verdicts["plain"]
    for label, verdict in verdicts.items():
        if label == "obfuscated":
            continue
        assert verdict.probability == pytest.approx(reference.probability, abs=1e-6), label
        assert (verdict.scl, verdict.pcl) == (reference.scl, reference.pcl), label


@pytest.mark.parametrize("name", ["ham.eml", "spam.eml", "phish.eml"])
def test_obfuscated_addresses_score_like_real_ones(shipped: SpamClassifier, name: str) -> None:
    raw = read(name)
    obfuscated = shipped.score(_obfuscate(raw))
    normal = shipped.score(_normal_addresses(raw))
    assert obfuscated.probability == pytest.approx(normal.probability, abs=1e-6)
    assert (obfuscated.scl, obfuscated.pcl) == (normal.scl, normal.pcl)


def test_recipient_domain_is_not_a_feature(shipped: SpamClassifier) -> None:
    raw = read("spam.eml")
    other = raw.replace(b"To: undisclosed-recipients:;", b"To: someone@spamassassin.taint.org")
    assert shipped.score(other).probability == pytest.approx(shipped.score(raw).probability, abs=1e-6)
