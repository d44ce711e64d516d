"""ARC verification and sealing over generated keys: our seal verifies, a second hop extends it,
tampering breaks it, and key lookups behave as DKIM's do."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeward.senderauth import authresults
from edgeward.senderauth.arc import ArcResult, ArcStatus, verify_arc
from edgeward.senderauth.arcseal import ArcSealError, seal
from edgeward.senderauth.authresults import SpfReport
from edgeward.testing.dns import FakeResolver

from .dkimkeys import SigningKey, rsa_key

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: list@lists.example.org\r\n"
    b"Subject: [list] meeting\r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
    b"\r\n"
    b"See you at ten.\r\n"
)
HEADERS = ["from", "to", "subject", "date"]


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return rsa_key(2048)


def dns_for(key: SigningKey, *domains: str) -> FakeResolver:
    return FakeResolver({(f"arc._domainkey.{d}", "TXT"): [key.record] for d in domains})


def hop(message: bytes, key: SigningKey, domain: str, arc: ArcResult | None) -> bytes:
    """What a forwarding gateway does: write its Authentication-Results, then seal."""
    header = authresults.build(domain, spf=SpfReport("pass", "alice@example.com"), arc=arc).encode()
    stamped = header + message
    fields = seal(
        stamped,
        selector="arc",
        domain=domain,
        private_key=key.private,
        authserv_id=domain,
        include_headers=HEADERS,
        timestamp=1764583200,
    )
    assert fields, "nothing was sealed"
    return b"".join(fields) + stamped


async def test_no_arc_is_none(key: SigningKey) -> None:
    result = await verify_arc(MESSAGE, dns_for(key))
    assert result.status is ArcStatus.NONE and result.findings() == ("ARC_NONE",)


async def test_arc_words_outside_field_names_are_still_no_arc(key: SigningKey) -> None:
    # "arc-" in a header value takes the full parse, in the body only the quick look: both
    # find no ARC set.
    in_value = b"Subject: arc-welding course\r\n" + MESSAGE
    in_body = MESSAGE + b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x.example; s=s; b=AAAA\r\n"
    for message in (in_value, in_body):
        result = await verify_arc(message, dns_for(key))
        assert result.status is ArcStatus.NONE and result.findings() == ("ARC_NONE",)


async def test_our_seal_verifies_and_a_second_hop_extends_it(key: SigningKey) -> None:
    dns = dns_for(key, "lists.example.org", "edge.example.net")
    first = hop(MESSAGE, key, "lists.example.org", None)
    checked = await verify_arc(first, dns)
    assert checked.status is ArcStatus.PASS, checked.reason
    assert [(s.instance, s.sealer, s.cv) for s in checked.sets] == [(1, "lists.example.org", "none")]
    assert "spf=pass" in checked.sets[0].results

    second = hop(first, key, "edge.example.net", checked)
    result = await verify_arc(second, dns)
    assert result.status is ArcStatus.PASS, result.reason
    assert [(s.instance, s.sealer, s.cv) for s in result.sets] == [
        (2, "edge.example.net", "pass"),
        (1, "lists.example.org", "none"),
    ]
    assert result.findings() == ("ARC_PASS",)


async def test_trusted_sealer(key: SigningKey) -> None:
    result = await verify_arc(hop(MESSAGE, key, "lists.example.org", None), dns_for(key, "lists.example.org"))
    trusted = result.trusted_sealer(["Lists.Example.org."])
    assert trusted is not None and trusted.instance == 1
    assert result.trusted_sealer(["example.org"]) is None
    assert ArcResult(ArcStatus.FAIL, sets=result.sets).trusted_sealer(["lists.example.org"]) is None


async def test_change_after_sealing_fails(key: SigningKey) -> None:
    sealed = hop(MESSAGE, key, "lists.example.org", None)
    result = await verify_arc(sealed.replace(b"at ten", b"at noon"), dns_for(key, "lists.example.org"))
    assert result.status is ArcStatus.FAIL and result.findings() == ("ARC_FAIL",)


async def test_key_lookup_time_out_is_temperror(key: SigningKey) -> None:
    sealed = hop(MESSAGE, key, "lists.example.org", None)
    dns = FakeResolver(timeouts=["arc._domainkey.lists.example.org"])
    result = await verify_arc(sealed, dns)
    assert result.status is ArcStatus.TEMPERROR and result.findings() == ("ARC_TEMPERROR",)


async def test_missing_key_fails(key: SigningKey) -> None:
    sealed = hop(MESSAGE, key, "lists.example.org", None)
    assert (await verify_arc(sealed, FakeResolver())).status is ArcStatus.FAIL


async def test_too_many_distinct_keys_fail_before_any_query(key: SigningKey) -> None:
    fields = b"".join(
        b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=d%d.example; s=arc; b=AAAA\r\n" % n for n in range(20)
    )
    dns = FakeResolver()
    result = await verify_arc(fields + MESSAGE, dns)
    assert result.status is ArcStatus.FAIL and "distinct ARC keys" in result.reason
    assert dns.queries == []


def test_nothing_to_seal_without_our_results(key: SigningKey) -> None:
    other = authresults.build("elsewhere.example", spf=SpfReport("pass")).encode()
    assert (
        seal(other + MESSAGE, selector="arc", domain="x.example", private_key=key.private, authserv_id="us")
        == []
    )


def test_inconclusive_own_check_is_not_sealed(key: SigningKey) -> None:
    header = authresults.build("us.example", arc=ArcResult(ArcStatus.TEMPERROR)).encode()
    assert (
        seal(
            header + MESSAGE,
            selector="arc",
            domain="us.example",
            private_key=key.private,
            authserv_id="us.example",
        )
        == []
    )


def test_bad_key_is_an_error() -> None:
    header = authresults.build("us.example", spf=SpfReport("pass")).encode()
    with pytest.raises(ArcSealError):
        seal(
            header + MESSAGE,
            selector="arc",
            domain="us.example",
            private_key=b"not a key",
            authserv_id="us.example",
        )


_PIECES = [
    b"ARC-Seal:",
    b"ARC-Message-Signature:",
    b"ARC-Authentication-Results:",
    b" i=1;",
    b" i=2;",
    b" cv=none;",
    b" cv=pass;",
    b" d=lists.example.org;",
    b" s=arc;",
    b" a=rsa-sha256;",
    b" b=AAAA;",
    b" bh=AA==;",
    b" h=from;",
    b"\r\n",
    b"\r\n ",
    b"From: a@example.com\r\n",
    b"\xff",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES) | st.binary(max_size=8), max_size=40))
async def test_no_input_raises(pieces: list[bytes]) -> None:
    result = await verify_arc(b"".join(pieces), FakeResolver())
    assert result.status in ArcStatus and result.findings()


def test_a_non_ascii_selector_is_an_error(key: SigningKey) -> None:
    header = authresults.build("us.example", spf=SpfReport("pass")).encode()
    with pytest.raises(ArcSealError):
        seal(
            header + MESSAGE,
            selector="sélecteur",
            domain="us.example",
            private_key=key.private,
            authserv_id="us.example",
        )
