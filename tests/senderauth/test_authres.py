"""The Authentication-Results field we write, and removal of the ones clients send in our name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeward.headers import parse_headers
from edgeward.senderauth.arc import ArcResult, ArcSet, ArcStatus
from edgeward.senderauth.authresults import SpfReport, authserv_id, build, own_results, remove_own
from edgeward.senderauth.dkim import DkimResult, DkimStatus, SignatureResult
from edgeward.senderauth.dmarc import DmarcRecord, DmarcResult, DmarcStatus, Policy

OURS = "mx.edge.example"


def test_one_field_with_every_method() -> None:
    dkim = DkimResult(
        (
            SignatureResult(
                "example.com", "s1", "rsa-sha256", DkimStatus.PASS, key_bits=2048, signature="abcdEFGH"
            ),
            SignatureResult("example.com", "s2", "rsa-sha256", DkimStatus.FAIL, "body hash did not verify"),
        )
    )
    dmarc = DmarcResult(
        DmarcStatus.FAIL,
        "example.com",
        "example.com",
        DmarcRecord(Policy.REJECT, Policy.NONE, pct=50),
        policy=Policy.REJECT,
        applied=Policy.QUARANTINE,
    )
    arc = ArcResult(
        ArcStatus.PASS, sets=(ArcSet(2, "lists.example.org", "lists.example.org", "pass", True, True, ""),)
    )
    field = build(
        OURS,
        spf=SpfReport("SoftFail", "bounce@example.com", "mail.example.com"),
        dkim=dkim,
        dmarc=dmarc,
        arc=arc,
    )
    assert field == (
        "Authentication-Results: mx.edge.example;\r\n"
        "\tspf=softfail smtp.mailfrom=bounce@example.com smtp.helo=mail.example.com;\r\n"
        "\tdkim=pass (2048-bit key) header.d=example.com header.s=s1 header.a=rsa-sha256"
        " header.b=abcdEFGH;\r\n"
        '\tdkim=fail reason="body hash did not verify" header.d=example.com header.s=s2'
        " header.a=rsa-sha256;\r\n"
        "\tdmarc=fail (p=reject sp=none dis=quarantine) header.from=example.com;\r\n"
        "\tarc=pass (i=2 d=lists.example.org)\r\n"
    )
    assert authserv_id(field.split(":", 1)[1]) == OURS


def test_nothing_checked_is_none() -> None:
    assert build(OURS) == "Authentication-Results: mx.edge.example; none\r\n"
    assert build(OURS, dkim=DkimResult(())) == "Authentication-Results: mx.edge.example;\r\n\tdkim=none\r\n"


def test_unknown_spf_word_is_not_copied() -> None:
    assert "spf=permerror" in build(OURS, spf=SpfReport("pass; dkim=pass"))


def test_hostile_values_are_quoted() -> None:
    field = build(OURS, spf=SpfReport("pass", 'a"b\\c@example.com', "evil\r\nX-Injected: yes; dkim=pass"))
    assert "\r\nX-Injected" not in field
    assert 'smtp.mailfrom="a\\"b\\\\c@example.com"' in field
    assert 'smtp.helo="evilX-Injected: yes; dkim=pass"' in field


@given(st.text(max_size=80), st.text(max_size=80), st.text(max_size=40))
def test_no_input_ends_the_field_or_adds_a_line(mailfrom: str, helo: str, domain: str) -> None:
    sig = SignatureResult(domain, domain, "rsa-sha256", DkimStatus.FAIL, reason=helo)
    field = build(OURS, spf=SpfReport("pass", mailfrom, helo), dkim=DkimResult((sig,)))
    lines = field.split("\r\n")
    assert lines[-1] == "" and all(line.startswith("\t") for line in lines[1:-1])
    assert "\r" not in "".join(lines) and "\n" not in "".join(lines)
    [(name, value)] = parse_headers((field + "\r\n").encode()).fields
    assert name == "Authentication-Results" and authserv_id(value) == OURS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" mx.edge.example; spf=pass", "mx.edge.example"),
        (" MX.Edge.Example 1; none", "MX.Edge.Example"),
        (" (forged (nested) \\) comment)\r\n mx.edge.example\r\n ; dkim=pass", "mx.edge.example"),
        (' "mx.edge.example"; spf=pass', "mx.edge.example"),
        (" mx.edge.example(comment); spf=pass", "mx.edge.example"),
        ("   ", None),
    ],
)
def test_authserv_id(value: str, expected: str | None) -> None:
    assert authserv_id(value) == expected


MIXED = (
    b"Received: from a by b\r\n"
    b"Authentication-Results: MX.EDGE.EXAMPLE; dkim=pass header.d=bank.example\r\n"
    b"Authentication-Results: (we checked) mx.edge.example;\r\n"
    b"\tspf=pass smtp.mailfrom=bank.example\r\n"
    b"authentication-results : mx.edge.example; dmarc=pass\r\n"
    b"Authentication-Results: upstream.example; spf=fail smtp.mailfrom=x\r\n"
    b"Authentication-Results: mx.edge.example.evil; spf=pass\r\n"
    b"Subject: hi\r\n"
    b"\r\n"
    b"Authentication-Results: mx.edge.example; body lines are not fields\r\n"
)


def test_remove_own_leaves_others_and_the_body() -> None:
    cleaned, removed = remove_own(MIXED, OURS)
    assert removed == 3
    assert cleaned == (
        b"Received: from a by b\r\n"
        b"Authentication-Results: upstream.example; spf=fail smtp.mailfrom=x\r\n"
        b"Authentication-Results: mx.edge.example.evil; spf=pass\r\n"
        b"Subject: hi\r\n"
        b"\r\n"
        b"Authentication-Results: mx.edge.example; body lines are not fields\r\n"
    )


def test_remove_own_with_lf_endings_and_nothing_to_remove() -> None:
    lf = MIXED.replace(b"\r\n", b"\n")
    cleaned, removed = remove_own(lf, OURS)
    assert removed == 3 and b"upstream.example" in cleaned and b"\r" not in cleaned
    untouched = b"Subject: hi\r\n\r\nbody\r\n"
    assert remove_own(untouched, OURS) == (untouched, 0)


def test_own_results_reads_what_build_wrote() -> None:
    field = build(OURS, spf=SpfReport("pass", "a@example.com"), arc=ArcResult(ArcStatus.NONE))
    value = field.split(":", 1)[1]
    assert own_results([value, " other.example; spf=fail"], OURS.upper()) == [
        "spf=pass smtp.mailfrom=a@example.com;\r\n\tarc=none"
    ]
    assert own_results([" mx.edge.example; none"], OURS) == []


def test_long_names_are_folded_under_the_line_limit() -> None:
    long = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + ".example"
    sig = SignatureResult(long, "s" * 300, "rsa-sha256", DkimStatus.FAIL, reason="r" * 300)
    field = build(OURS, spf=SpfReport("pass", "x" * 64 + "@" + long, long), dkim=DkimResult((sig,)))
    lines = field.split("\r\n")
    assert max(len(line) for line in lines) < 300
    assert "\tsmtp.helo=" + long + ";" in lines and f"\theader.d={long}" in lines
    [(_, value)] = parse_headers((field + "\r\n").encode()).fields
    assert own_results([value], OURS)[0].startswith("spf=pass smtp.mailfrom=")
