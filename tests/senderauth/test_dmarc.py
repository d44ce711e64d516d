"""DMARC policy discovery, alignment and disposition (RFC 7489) over the shipped DNS fake."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeward.senderauth.dkim import DkimResult, DkimStatus, SignatureResult
from edgeward.senderauth.dmarc import (
    DmarcChecker,
    DmarcRecordError,
    DmarcStatus,
    OrganizationalDomains,
    Policy,
    parse_record,
)
from edgeward.testing.dns import FakeResolver

_ORG = OrganizationalDomains()


@pytest.fixture(scope="module")
def org() -> OrganizationalDomains:
    return _ORG


def dkim_pass(*domains: str, status: DkimStatus = DkimStatus.PASS) -> DkimResult:
    return DkimResult(tuple(SignatureResult(d, "s1", "rsa-sha256", status) for d in domains))


def checker(org: OrganizationalDomains, records: dict[str, str], draw: float = 0.0) -> DmarcChecker:
    dns = FakeResolver({(f"_dmarc.{name}", "TXT"): [text] for name, text in records.items()})
    return DmarcChecker(dns, org, rng=lambda: draw)


REJECT = {"example.com": "v=DMARC1; p=reject"}


async def test_aligned_dkim_passes(org: OrganizationalDomains) -> None:
    result = await checker(org, REJECT).check(["a@example.com"], dkim_pass("example.com"), "fail", "x.net")
    assert result.status is DmarcStatus.PASS and result.dkim_aligned and not result.spf_aligned
    assert result.findings() == ("DMARC_PASS",)


async def test_relaxed_alignment_accepts_a_subdomain_signature(org: OrganizationalDomains) -> None:
    result = await checker(org, REJECT).check(["a@example.com"], dkim_pass("mail.example.com"), "none", "")
    assert result.status is DmarcStatus.PASS


async def test_strict_dkim_alignment_wants_the_exact_domain(org: OrganizationalDomains) -> None:
    strict = {"example.com": "v=DMARC1; p=reject; adkim=s"}
    result = await checker(org, strict).check(["a@example.com"], dkim_pass("mail.example.com"), "none", "")
    assert result.status is DmarcStatus.FAIL and not result.dkim_aligned
    assert (result.policy, result.applied) == (Policy.REJECT, Policy.REJECT)
    assert result.findings() == ("DMARC_FAIL", "DMARC_POLICY_REJECT")


async def test_spf_alignment_relaxed_and_strict(org: OrganizationalDomains) -> None:
    relaxed = await checker(org, REJECT).check(["a@example.com"], None, "pass", "bounce.example.com")
    assert relaxed.status is DmarcStatus.PASS and relaxed.spf_aligned
    strict = {"example.com": "v=DMARC1; p=reject; aspf=s"}
    result = await checker(org, strict).check(["a@example.com"], None, "pass", "bounce.example.com")
    assert result.status is DmarcStatus.FAIL
    exact = await checker(org, strict).check(["a@example.com"], None, "pass", "EXAMPLE.COM.")
    assert exact.status is DmarcStatus.PASS


async def test_unaligned_passes_do_not_count(org: OrganizationalDomains) -> None:
    result = await checker(org, REJECT).check(
        ["a@example.com"], dkim_pass("example.net", "example.com.evil.org"), "pass", "example.org"
    )
    assert result.status is DmarcStatus.FAIL


async def test_softfail_spf_is_not_a_pass(org: OrganizationalDomains) -> None:
    result = await checker(org, REJECT).check(["a@example.com"], None, "softfail", "example.com")
    assert result.status is DmarcStatus.FAIL


async def test_organisational_domain_record_and_subdomain_policy(org: OrganizationalDomains) -> None:
    records = {"example.co.uk": "v=DMARC1; p=reject; sp=quarantine"}
    dmarc = checker(org, records)
    result = await dmarc.check(["a@news.example.co.uk"], None, "none", "")
    assert result.policy_domain == "example.co.uk" and result.from_domain == "news.example.co.uk"
    assert result.policy is Policy.QUARANTINE
    # The organisational domain itself gets p=, not sp=.
    top = await dmarc.check(["a@example.co.uk"], None, "none", "")
    assert top.policy is Policy.REJECT
    # Relaxed alignment across the organisation: a signature by another subdomain aligns.
    aligned = await dmarc.check(["a@news.example.co.uk"], dkim_pass("mail.example.co.uk"), "none", "")
    assert aligned.status is DmarcStatus.PASS


async def test_public_suffix_is_not_an_organisation(org: OrganizationalDomains) -> None:
    assert org("a.b.example.co.uk") == "example.co.uk"
    assert org("user.github.io") == "user.github.io"  # the list's private section counts
    # Two customers of one public suffix do not align with each other.
    records = {"alice.github.io": "v=DMARC1; p=reject"}
    result = await checker(org, records).check(["a@alice.github.io"], dkim_pass("mallory.github.io"), "", "")
    assert result.status is DmarcStatus.FAIL


async def test_subdomain_record_wins_over_the_organisation(org: OrganizationalDomains) -> None:
    records = {"example.com": "v=DMARC1; p=reject", "news.example.com": "v=DMARC1; p=none"}
    result = await checker(org, records).check(["a@news.example.com"], None, "none", "")
    assert result.policy_domain == "news.example.com" and result.policy is Policy.NONE
    assert result.findings() == ("DMARC_FAIL", "DMARC_POLICY_NONE")


@pytest.mark.parametrize(
    ("draw", "applied", "sampled_out"), [(0.49, Policy.REJECT, False), (0.5, Policy.QUARANTINE, True)]
)
async def test_pct_samples_with_the_injected_source(
    org: OrganizationalDomains, draw: float, applied: Policy, sampled_out: bool
) -> None:
    records = {"example.com": "v=DMARC1; p=reject; pct=50"}
    result = await checker(org, records, draw).check(["a@example.com"], None, "fail", "example.com")
    assert result.policy is Policy.REJECT
    assert (result.applied, result.sampled_out) == (applied, sampled_out)


async def test_pct_zero_quarantine_becomes_none(org: OrganizationalDomains) -> None:
    records = {"example.com": "v=DMARC1; p=quarantine; pct=0"}
    result = await checker(org, records, 0.0).check(["a@example.com"], None, "fail", "example.com")
    assert (result.policy, result.applied) == (Policy.QUARANTINE, Policy.NONE)


async def test_no_record_is_none(org: OrganizationalDomains) -> None:
    result = await checker(org, {}).check(["a@example.com"], None, "fail", "example.com")
    assert result.status is DmarcStatus.NONE and result.findings() == ("DMARC_NONE",)


async def test_several_records_are_none(org: OrganizationalDomains) -> None:
    dns = FakeResolver({("_dmarc.example.com", "TXT"): ["v=DMARC1; p=reject", "v=DMARC1; p=none"]})
    result = await DmarcChecker(dns, org).check(["a@example.com"], None, "fail", "")
    assert result.status is DmarcStatus.NONE and "2 DMARC records" in result.reason


async def test_other_txt_records_are_ignored(org: OrganizationalDomains) -> None:
    dns = FakeResolver(
        {("_dmarc.example.com", "TXT"): ["google-site-verification=abc", "v=DMARC1; p=reject"]}
    )
    result = await DmarcChecker(dns, org).check(["a@example.com"], None, "fail", "")
    assert result.status is DmarcStatus.FAIL and result.policy is Policy.REJECT


@pytest.mark.parametrize("failure", ["time_out", "fail"])
async def test_dns_failure_is_temperror(org: OrganizationalDomains, failure: str) -> None:
    dns = FakeResolver()
    getattr(dns, failure)("_dmarc.example.com")
    result = await DmarcChecker(dns, org).check(["a@example.com"], None, "fail", "")
    assert result.status is DmarcStatus.TEMPERROR and result.findings() == ("DMARC_TEMPERROR",)


async def test_dns_failure_at_the_organisational_domain_is_temperror(org: OrganizationalDomains) -> None:
    dns = FakeResolver()
    dns.time_out("_dmarc.example.com")
    result = await DmarcChecker(dns, org).check(["a@news.example.com"], None, "fail", "")
    assert result.status is DmarcStatus.TEMPERROR
    assert dns.queries == [("_dmarc.news.example.com", "TXT"), ("_dmarc.example.com", "TXT")]


async def test_aligned_temperror_is_temperror_not_fail(org: OrganizationalDomains) -> None:
    dkim = dkim_pass("example.com", status=DkimStatus.TEMPERROR)
    result = await checker(org, REJECT).check(["a@example.com"], dkim, "fail", "example.net")
    assert result.status is DmarcStatus.TEMPERROR
    spf = await checker(org, REJECT).check(["a@example.com"], None, "temperror", "example.com")
    assert spf.status is DmarcStatus.TEMPERROR


@pytest.mark.parametrize(
    "from_fields",
    [
        ["a@example.com", "b@example.com"],  # two From fields
        [],  # none
        ["not an address"],
        ["a@exa mple.com"],
        ["a@example.com, b@example.org"],  # authors of two domains
        ["@example.com"],
    ],
)
async def test_bad_from_is_a_failure_with_the_strictest_policy(
    org: OrganizationalDomains, from_fields: list[str]
) -> None:
    result = await checker(org, REJECT).check(from_fields, dkim_pass("example.com"), "pass", "example.com")
    assert result.status is DmarcStatus.FAIL and result.applied is Policy.REJECT
    assert "DMARC_FROM_INVALID" in result.findings()


async def test_several_authors_of_one_domain_are_fine(org: OrganizationalDomains) -> None:
    result = await checker(org, REJECT).check(
        ['"A" <a@example.com>, b@Example.COM'], dkim_pass("example.com"), "", ""
    )
    assert result.status is DmarcStatus.PASS and result.from_domain == "example.com"


async def test_malformed_record_is_permerror(org: OrganizationalDomains) -> None:
    records = {"example.com": "v=DMARC1; p=bogus"}
    result = await checker(org, records).check(["a@example.com"], None, "fail", "")
    assert result.status is DmarcStatus.PERMERROR and result.findings() == ("DMARC_PERMERROR",)


def test_record_parsing_defaults_and_fallbacks() -> None:
    record = parse_record(
        "v=DMARC1; p=Quarantine; sp=nonsense; pct=250; adkim=s; aspf=x; rua=mailto:d@example.com"
    )
    assert record.policy is Policy.QUARANTINE and record.subdomain_policy is None
    assert (record.pct, record.strict_dkim, record.strict_spf) == (100, True, False)
    assert record.rua == ("mailto:d@example.com",)
    # RFC 7489 §6.3: no valid p= but a valid rua= is read as p=none.
    assert parse_record("v=DMARC1; rua=mailto:d@example.com").policy is Policy.NONE
    for bad in ("v=DMARC1", "p=reject; v=DMARC1", "v=DMARC2; p=reject", "v=DMARC1; p=" + "x" * 3000):
        with pytest.raises(DmarcRecordError):
            parse_record(bad)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=60), max_size=3))
async def test_any_from_field_gets_a_result(from_fields: list[str]) -> None:
    dmarc = DmarcChecker(FakeResolver({("_dmarc.example.com", "TXT"): ["v=DMARC1; p=reject"]}), _ORG)
    result = await dmarc.check(from_fields, None, "pass", "example.com")
    assert result.status in DmarcStatus and result.findings()
