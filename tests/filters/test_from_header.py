"""The from-header agent: exactly one well-formed From field (RFC 5322 §3.6)."""

from __future__ import annotations

import pytest

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.filters.agents.from_header import FromHeader, from_problems
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.types import Action, Peer

BODY = b"\r\nhello\r\n"


def eod(head: bytes) -> StageContext:
    session = SessionInfo("s1", Peer("192.0.2.1", 1234), ReceiveConnectorConfig(name="internet"))
    return StageContext(Stage.EOD, session, data=head + BODY)


@pytest.mark.parametrize(
    "head",
    [
        b"From: a@example.org\r\nSubject: x\r\n",
        b"Subject: x\r\nfrom: a@example.org\r\n",
        b"From:\r\n a@example.org\r\n",  # folded, still an author
        b"From: a@example.org\r\nResent-From: b@example.org\r\nX-Original-From: c@example.org\r\n",
    ],
)
def test_one_well_formed_from_passes(head: bytes) -> None:
    assert from_problems(head + BODY) == []


@pytest.mark.parametrize(
    ("head", "finding"),
    [
        (b"Subject: no author\r\n", "FROM_MISSING"),
        (b"From: a@example.org\r\nFrom: b@example.org\r\n", "FROM_MULTIPLE"),
        (b"From : a@example.org\r\n", "FROM_MALFORMED"),
        (b"From\t: a@example.org\r\n", "FROM_MALFORMED"),
        (b"From:   \r\n", "FROM_MALFORMED"),
    ],
)
async def test_bad_from_is_refused_with_550_5_6_0(head: bytes, finding: str) -> None:
    out = await FromHeader().check(Stage.EOD, eod(head))
    assert out.action is Action.REJECT and out.reply is not None
    assert (out.reply.code, out.reply.enhanced) == (550, "5.6.0")
    assert finding in [f.name for f in out.findings]


async def test_a_spaced_second_from_counts_as_two() -> None:
    found = {f.name for f in from_problems(b"From: a@example.org\r\nFrom : b@example.org\r\n" + BODY)}
    assert found == {"FROM_MULTIPLE", "FROM_MALFORMED"}


async def test_a_body_line_is_not_a_header() -> None:
    data = b"From: a@example.org\r\n\r\nFrom: quoted in the body\r\nFrom : again\r\n"
    assert from_problems(data) == []


async def test_quarantine_mode_holds_the_message() -> None:
    out = await FromHeader("quarantine").check(Stage.EOD, eod(b"Subject: no author\r\n"))
    assert out.action is Action.QUARANTINE and out.reply is None
    assert [f.name for f in out.findings] == ["FROM_MISSING"]
