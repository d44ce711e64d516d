"""SPF checks through the shipped DNS fake: results, limits, bounds, faults and the time limit."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeward.ports import DnsAnswer
from edgeward.senderauth.spf import (
    MAX_TXT_OCTETS,
    MAX_TXT_RECORDS,
    SpfIdentity,
    SpfStatus,
    check_helo,
    check_spf,
)
from edgeward.testing.dns import FakeResolver

IP = "192.0.2.10"


def zone(**txt: str) -> FakeResolver:
    """TXT records by name; ``_`` in a keyword stands for ``.``."""
    return FakeResolver({(name.replace("_", "."), "TXT"): [value] for name, value in txt.items()})


async def test_pass_names_the_mechanism_and_counts_lookups() -> None:
    dns = zone(example_org="v=spf1 a:mx.example.org ip4:192.0.2.0/24 -all")
    dns.add("mx.example.org", "A", "198.51.100.1")
    result = await check_spf(dns, IP, "alice@example.org", "mx.example.org")
    assert (result.status, result.identity, result.domain) == (
        SpfStatus.PASS,
        SpfIdentity.MAILFROM,
        "example.org",
    )
    assert result.mechanism == "ip4:192.0.2.0/24"
    assert (result.dns_lookups, result.void_lookups) == (1, 0)
    assert result.dns_queries == len(dns.queries) == 2
    assert result.finding_name() == "SPF_PASS"


@pytest.mark.parametrize(
    ("record", "status"),
    [
        ("v=spf1 -all", SpfStatus.FAIL),
        ("v=spf1 ~all", SpfStatus.SOFTFAIL),
        ("v=spf1 ?all", SpfStatus.NEUTRAL),
        ("v=spf1 ip4:192.0.2.10", SpfStatus.PASS),
        ("v=spf1 moo:bar -all", SpfStatus.PERMERROR),
    ],
)
async def test_every_result_has_its_finding(record: str, status: SpfStatus) -> None:
    result = await check_spf(zone(example_org=record), IP, "a@example.org", "h.example.net")
    assert result.status is status
    assert result.finding_name() == f"SPF_{status.value.upper()}"


async def test_none_temperror_and_their_findings() -> None:
    dns = zone(example_org="v=spf1 -all")
    dns.time_out("slow.example")
    dns.fail("broken.example")
    none = await check_spf(dns, IP, "a@nothing.example", "h")
    slow = await check_spf(dns, IP, "a@slow.example", "h")
    broken = await check_spf(dns, IP, "a@broken.example", "h")
    assert (none.finding_name(), slow.finding_name(), broken.finding_name()) == (
        "SPF_NONE", "SPF_TEMPERROR", "SPF_TEMPERROR",
    )  # fmt: skip
    assert slow.problem is not None and "timeout" in slow.problem
    assert broken.problem is not None and "servfail" in broken.problem


async def test_null_sender_checks_the_helo_identity() -> None:
    dns = zone(mx_example_net="v=spf1 ip4:192.0.2.10 -all", example_org="v=spf1 -all")
    result = await check_spf(dns, IP, "", "mx.example.net")
    assert (result.status, result.identity, result.domain) == (
        SpfStatus.PASS,
        SpfIdentity.HELO,
        "mx.example.net",
    )
    helo = await check_helo(dns, "192.0.2.99", "mx.example.net")
    assert (helo.status, helo.identity) == (SpfStatus.FAIL, SpfIdentity.HELO)
    nothing = await check_spf(dns, IP, "", "")
    assert (nothing.status, nothing.identity) == (SpfStatus.NONE, SpfIdentity.HELO)
    mailfrom = await check_spf(dns, IP, "a@example.org", "mx.example.net")
    assert (mailfrom.status, mailfrom.identity) == (SpfStatus.FAIL, SpfIdentity.MAILFROM)


async def test_explanation_is_the_domains_exp_text_macro_expanded_and_only_for_fail() -> None:
    dns = zone(
        example_org="v=spf1 -ip4:192.0.2.10 ?all exp=why.example.org",
        why_example_org="%{i} may not send for %{d} (sender %{s})",
    )
    fail = await check_spf(dns, IP, "bob@example.org", "h.example.net")
    assert fail.status is SpfStatus.FAIL
    assert fail.explanation == "192.0.2.10 may not send for example.org (sender bob@example.org)"
    neutral = await check_spf(dns, "192.0.2.11", "bob@example.org", "h.example.net")
    assert (neutral.status, neutral.explanation) == (SpfStatus.NEUTRAL, None)
    plain = await check_spf(zone(example_org="v=spf1 -all"), IP, "bob@example.org", "h")
    assert plain.explanation is None and "does not designate" in plain.description()


async def test_include_loop_ends_at_the_lookup_limit() -> None:
    dns = zone(a_example="v=spf1 include:b.example -all", b_example="v=spf1 include:a.example -all")
    result = await check_spf(dns, IP, "x@a.example", "h")
    assert result.status is SpfStatus.PERMERROR
    assert result.dns_lookups == 11
    assert len(dns.queries) <= 11


async def test_eleventh_dns_term_is_a_permerror_and_ip_terms_are_free() -> None:
    terms = " ".join(f"a:h{i}.example" for i in range(10))
    dns = zone(example_org=f"v=spf1 {terms} ip4:192.0.2.10 -all")
    for i in range(10):
        dns.add(f"h{i}.example", "A", "198.51.100.1")
    assert (await check_spf(dns, IP, "x@example.org", "h")).status is SpfStatus.PASS
    dns = zone(example_org=f"v=spf1 {terms} a:h10.example ip4:192.0.2.10 -all")
    for i in range(11):
        dns.add(f"h{i}.example", "A", "198.51.100.1")
    result = await check_spf(dns, IP, "x@example.org", "h")
    assert result.status is SpfStatus.PERMERROR and result.dns_lookups == 11


async def test_third_void_lookup_is_a_permerror() -> None:
    two = zone(example_org="v=spf1 a:n1.example a:n2.example ip4:192.0.2.10 -all")
    assert (await check_spf(two, IP, "x@example.org", "h")).status is SpfStatus.PASS
    three = zone(example_org="v=spf1 a:n1.example a:n2.example a:n3.example ip4:192.0.2.10 -all")
    result = await check_spf(three, IP, "x@example.org", "h")
    assert (result.status, result.void_lookups) == (SpfStatus.PERMERROR, 3)
    assert result.problem is not None and "Void lookup" in result.problem


async def test_more_than_ten_mx_names_is_a_permerror() -> None:
    dns = zone(example_org="v=spf1 mx -all")
    for i in range(11):
        dns.add("example.org", "MX", f"{i} mx{i}.example.org")
    result = await check_spf(dns, IP, "x@example.org", "h")
    assert result.status is SpfStatus.PERMERROR
    assert not any(rdtype == "A" for _, rdtype in dns.queries)


async def test_only_ten_ptr_names_are_validated() -> None:
    dns = zone(example_org="v=spf1 ptr -all")
    for i in range(12):
        dns.add("10.2.0.192.in-addr.arpa", "PTR", f"h{i}.example.org")
        dns.add(f"h{i}.example.org", "A", IP if i == 11 else "198.51.100.1")
    result = await check_spf(dns, IP, "x@example.org", "h")
    assert result.status is SpfStatus.FAIL  # h11 would validate, but is past the tenth name
    assert ("h11.example.org", "A") not in dns.queries


async def test_huge_txt_answers_are_bounded() -> None:
    big = zone(example_org="v=spf1 ip4:192.0.2.10 -all")
    big.add("example.org", "TXT", "x" * MAX_TXT_OCTETS)
    result = await check_spf(big, IP, "x@example.org", "h")
    assert (
        result.status is SpfStatus.PERMERROR and result.problem is not None and "too large" in result.problem
    )
    many = zone(example_org="v=spf1 ip4:192.0.2.10 -all")
    for i in range(MAX_TXT_RECORDS):
        many.add("example.org", "TXT", f"token-{i}")
    assert (await check_spf(many, IP, "x@example.org", "h")).status is SpfStatus.PERMERROR
    fits = zone(example_org="v=spf1 ip4:192.0.2.10 -all")
    for i in range(MAX_TXT_RECORDS - 1):
        fits.add("example.org", "TXT", f"token-{i}")
    assert (await check_spf(fits, IP, "x@example.org", "h")).status is SpfStatus.PASS


class Silent:
    """A resolver that never answers, as a server dropping the queries would."""

    def __init__(self) -> None:
        self.asked = 0

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        self.asked += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_time_limit_covers_the_whole_check() -> None:
    silent = Silent()
    result = await check_spf(silent, IP, "x@example.org", "h", time_limit=0.05)
    assert (result.status, result.identity, result.domain) == (
        SpfStatus.TEMPERROR, SpfIdentity.MAILFROM, "example.org",
    )  # fmt: skip
    assert result.problem == "SPF evaluation exceeded its time limit"
    assert silent.asked <= 1  # the limit may be spent before the worker even asks


class Broken:
    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        raise RuntimeError("resolver bug")


async def test_a_resolver_fault_is_a_temperror_never_a_pass() -> None:
    result = await check_spf(Broken(), IP, "x@example.org", "h")
    assert result.status is SpfStatus.TEMPERROR
    assert result.problem is not None and "resolver bug" in result.problem


async def test_runs_on_a_given_executor_and_checks_concurrently() -> None:
    dns = zone(example_org="v=spf1 ip4:192.0.2.0/24 -all")
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = await asyncio.gather(
            *(check_spf(dns, f"192.0.2.{i}", "x@example.org", "h", executor=pool) for i in range(8)),
            check_spf(dns, "198.51.100.1", "x@example.org", "h", executor=pool),
        )
    assert [r.status for r in results] == [SpfStatus.PASS] * 8 + [SpfStatus.FAIL]


async def test_ipv6_and_mapped_ipv4_clients() -> None:
    dns = zone(example_org="v=spf1 ip6:2001:db8::/32 ip4:192.0.2.10 -all")
    assert (await check_spf(dns, "2001:db8::1", "x@example.org", "h")).status is SpfStatus.PASS
    assert (await check_spf(dns, "::ffff:192.0.2.10", "x@example.org", "h")).status is SpfStatus.PASS
    assert (await check_spf(dns, "[2001:db9::1]", "x@example.org", "h")).status is SpfStatus.FAIL


async def test_a_bad_ip_is_the_callers_error() -> None:
    with pytest.raises(ValueError):
        await check_spf(FakeResolver(), "not-an-ip", "x@example.org", "h")


async def test_as_dict_carries_every_field() -> None:
    result = await check_spf(zone(example_org="v=spf1 -all"), IP, "x@example.org", "h")
    doc = result.as_dict()
    assert doc["result"] == "fail" and doc["finding"] == "SPF_FAIL" and doc["mechanism"] == "-all"
    assert doc["dns_lookups"] == 0 and doc["dns_queries"] == 1


_TERMS = st.sampled_from(
    ["a", "mx", "ptr", "-all", "~all", "?all", "include:x.example", "redirect=x.example",
     "exists:%{i}.x.example", "ip4:192.0.2.0/24", "ip6:2001:db8::/32", "exp=%{l}.x.example", "a:%{d2}",
     "%{p}", "%{zz}", "=bad", "a//129", "include:%{s}", "mx:%{h}/24//64", "ptr:%{ir}.%{v}", "v=spf1"]
)  # fmt: skip
_NAMES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    record=st.lists(_TERMS, max_size=12).map(lambda terms: " ".join(["v=spf1", *terms])),
    other=st.lists(_TERMS, max_size=6).map(lambda terms: " ".join(["v=spf1", *terms])),
    local=_NAMES,
    helo=_NAMES,
)
async def test_any_record_and_envelope_gives_a_result(record: str, other: str, local: str, helo: str) -> None:
    dns = zone(example_org=record, x_example=other)
    dns.add("example.org", "A", IP)
    dns.add("example.org", "MX", "10 example.org")
    dns.add("10.2.0.192.in-addr.arpa", "PTR", "example.org")
    for sender in (f"{local}@example.org", local, ""):
        result = await check_spf(dns, IP, sender, helo or "example.org")
        assert result.status in SpfStatus
        assert result.dns_lookups <= 11 and result.void_lookups <= 3
