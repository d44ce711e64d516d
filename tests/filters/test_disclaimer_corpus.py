"""Disclaimers over the shared parser-test corpora (cpython, gmime, mime4j, mimekit, mail-parser):
every message survives, no header field appears that was not there, and the MIME structure the
stdlib reads is the same before and after wherever a disclaimer went in."""

from __future__ import annotations

import email
import email.policy

import pytest

from edgeward.filters.rules.disclaimer import add_disclaimer
from edgeward.filters.rules.headers import prepend_subject
from edgeward.headers import parse_headers
from tests.fuzz.seeds import PARSER_TESTS, corpus_messages, corpus_reason

OURS = {"subject", "content-type", "content-transfer-encoding", "mime-version"}


def _structure(data: bytes) -> list[str]:
    return [p.get_content_type() for p in email.message_from_bytes(data, policy=email.policy.compat32).walk()]


@pytest.mark.skipif(not PARSER_TESTS.is_dir(), reason=corpus_reason(PARSER_TESTS))
def test_the_parser_corpora_keep_their_structure() -> None:
    messages = [m.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for m in corpus_messages()]
    added = 0
    for data in messages:
        result = add_disclaimer(data, "Confidential: Ünïcode 機密")
        out = prepend_subject(result.data, "[EXT]")
        before = {n.lower() for n, _ in parse_headers(data).fields}
        assert {n.lower() for n, _ in parse_headers(out).fields} - before <= OURS
        head = parse_headers(data)
        if not result.parts or head.malformed or not head.fields:
            continue
        added += 1
        after = _structure(result.data)
        if after[:1] == ["multipart/mixed"] and "message/rfc822" in after[:3]:
            continue  # a signed original, wrapped whole
        assert after == _structure(data)
    assert added > 100  # the corpora hold a few hundred messages with a text body
