"""Conformance suite of :class:`edgeward.ports.DnsLookup`: ``DnsResolver.query`` against a real
authoritative server (nsd on loopback) and the shipped ``FakeResolver`` loaded with the same
records give the same answers and the same failures.

The records are written twice on purpose, once as zone text and once in the presentation form
the port promises, so the suite also checks the translation from wire data to those strings.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgeward.net.dns import DnsResolver
from edgeward.ports import DnsError, DnsFailure, DnsLookup
from edgeward.testing.dns import FakeResolver
from tests.dnsserver import NSD, start_nsd
from tests.ports import free_port

LONG = "".join(f"{i:04d}" + "x" * 246 for i in range(8))  # 2000 octets: TCP after truncation
SPLIT = [LONG[i : i + 250] for i in range(0, len(LONG), 250)]
REFUSED = "host.not-served.example"

ZONE = f"""$ORIGIN conf.test.
$TTL 300
@        SOA ns.conf.test. hostmaster.conf.test. 1 3600 600 86400 300
@        NS  ns.conf.test.
ns       A   127.0.0.1
a        A   192.0.2.1
a        A   192.0.2.2
a        AAAA 2001:db8::1
v6only   AAAA 2001:db8::2
spf      TXT "v=spf1 ip4:192.0.2.0/24" " include:_spf.conf.test" " -all"
spf      TXT "second record"
long     TXT {" ".join(f'"{s}"' for s in SPLIT)}
latin    TXT "caf\\233"
mail     MX  10 mx1.conf.test.
mail     MX  20 mx2.conf.test.
null     MX  0 .
c1       CNAME c2
c2       CNAME a
dangling CNAME nowhere.conf.test.
x.y.ent  A   192.0.2.9
*.wild   TXT "wildcard"
here.wild A  192.0.2.10
loop1    CNAME loop2
xn--bcher-kva A 192.0.2.5
_dmarc   TXT "v=DMARC1; p=reject"
loop2    CNAME loop1
"""

REVERSE = """$ORIGIN 2.0.192.in-addr.arpa.
$TTL 300
@  SOA ns.conf.test. hostmaster.conf.test. 1 3600 600 86400 300
@  NS  ns.conf.test.
1  PTR a.conf.test.
1  PTR alias.conf.test.
"""

RECORDS: dict[tuple[str, str], list[str]] = {
    ("conf.test", "SOA"): ["ns.conf.test. hostmaster.conf.test. 1 3600 600 86400 300"],
    ("conf.test", "NS"): ["ns.conf.test"],
    ("ns.conf.test", "A"): ["127.0.0.1"],
    ("a.conf.test", "A"): ["192.0.2.1", "192.0.2.2"],
    ("a.conf.test", "AAAA"): ["2001:db8::1"],
    ("v6only.conf.test", "AAAA"): ["2001:db8::2"],
    ("spf.conf.test", "TXT"): ["v=spf1 ip4:192.0.2.0/24 include:_spf.conf.test -all", "second record"],
    ("long.conf.test", "TXT"): [LONG],
    ("latin.conf.test", "TXT"): ["caf\ufffd"],
    ("mail.conf.test", "MX"): ["10 mx1.conf.test", "20 mx2.conf.test"],
    ("null.conf.test", "MX"): ["0 ."],
    ("c1.conf.test", "CNAME"): ["c2.conf.test"],
    ("c2.conf.test", "CNAME"): ["a.conf.test"],
    ("dangling.conf.test", "CNAME"): ["nowhere.conf.test"],
    ("x.y.ent.conf.test", "A"): ["192.0.2.9"],
    ("*.wild.conf.test", "TXT"): ["wildcard"],
    ("here.wild.conf.test", "A"): ["192.0.2.10"],
    ("loop1.conf.test", "CNAME"): ["loop2.conf.test"],
    ("xn--bcher-kva.conf.test", "A"): ["192.0.2.5"],
    ("_dmarc.conf.test", "TXT"): ["v=DMARC1; p=reject"],
    ("loop2.conf.test", "CNAME"): ["loop1.conf.test"],
    ("2.0.192.in-addr.arpa", "SOA"): ["ns.conf.test. hostmaster.conf.test. 1 3600 600 86400 300"],
    ("2.0.192.in-addr.arpa", "NS"): ["ns.conf.test"],
    ("1.2.0.192.in-addr.arpa", "PTR"): ["a.conf.test", "alias.conf.test"],
}

Answer = tuple[str, ...] | DnsFailure

# (name, type, the sorted records or the failure): what both implementations must answer.
CASES: list[tuple[str, str, Answer]] = [
    ("a.conf.test", "A", ("192.0.2.1", "192.0.2.2")),
    ("A.Conf.TEST.", "a", ("192.0.2.1", "192.0.2.2")),  # case and the final dot do not matter
    ("a.conf.test", "AAAA", ("2001:db8::1",)),
    ("v6only.conf.test", "A", ()),  # NODATA: the name exists, the type does not
    ("v6only.conf.test", "AAAA", ("2001:db8::2",)),
    ("spf.conf.test", "TXT", ("second record", "v=spf1 ip4:192.0.2.0/24 include:_spf.conf.test -all")),
    ("long.conf.test", "TXT", (LONG,)),
    ("latin.conf.test", "TXT", ("caf\ufffd",)),
    ("mail.conf.test", "MX", ("10 mx1.conf.test", "20 mx2.conf.test")),
    ("null.conf.test", "MX", ("0 .",)),
    ("mail.conf.test", "A", ()),
    ("1.2.0.192.in-addr.arpa", "PTR", ("a.conf.test", "alias.conf.test")),
    ("9.2.0.192.in-addr.arpa", "PTR", DnsFailure.NXDOMAIN),
    ("c1.conf.test", "A", ("192.0.2.1", "192.0.2.2")),  # a chain of two CNAMEs is followed
    ("c1.conf.test", "AAAA", ("2001:db8::1",)),
    ("c1.conf.test", "TXT", ()),  # NODATA at the end of the chain
    ("c1.conf.test", "CNAME", ("c2.conf.test",)),  # asking for the CNAME itself gets it
    ("dangling.conf.test", "A", DnsFailure.NXDOMAIN),
    ("nope.conf.test", "A", DnsFailure.NXDOMAIN),
    ("nope.conf.test", "TXT", DnsFailure.NXDOMAIN),
    ("below.nope.conf.test", "A", DnsFailure.NXDOMAIN),
    ("y.ent.conf.test", "A", ()),  # empty non-terminal: NODATA, never NXDOMAIN (RFC 8020)
    ("ent.conf.test", "TXT", ()),
    ("anything.wild.conf.test", "TXT", ("wildcard",)),  # RFC 4592 wildcard synthesis
    ("two.labels.wild.conf.test", "TXT", ("wildcard",)),
    ("anything.wild.conf.test", "A", ()),
    ("here.wild.conf.test", "TXT", ()),  # an existing name is not covered by the wildcard
    ("wild.conf.test", "TXT", ()),
    ("loop1.conf.test", "A", DnsFailure.SERVFAIL),  # a CNAME loop ends, as a failure
    (REFUSED, "A", DnsFailure.SERVFAIL),  # nsd refuses a zone it does not serve
    ("a" * 64 + ".conf.test", "A", DnsFailure.INVALID),
    (".".join(["abcdefghi"] * 26), "A", DnsFailure.INVALID),  # 259 octets: over 255 on the wire
    ("a..conf.test", "A", DnsFailure.INVALID),
    ("bücher.conf.test", "A", ("192.0.2.5",)),  # IDNA: asked as its A-label
    ("xn--bcher-kva.conf.test", "A", ("192.0.2.5",)),
    ("_dmarc.conf.test", "TXT", ("v=DMARC1; p=reject",)),  # underscore labels (RFC 8552)
    ("_DMARC.Conf.Test", "TXT", ("v=DMARC1; p=reject",)),
    ("", "A", DnsFailure.INVALID),  # an empty domain from an envelope is not a question
    (".", "A", DnsFailure.INVALID),
    ("sp ace.conf.test", "A", DnsFailure.NXDOMAIN),
]


@pytest.fixture(scope="module")
def nsd_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if NSD is None:
        pytest.skip("nsd is not installed (apt-get install -y nsd)")
    root: Path = tmp_path_factory.mktemp("nsd")
    server = start_nsd(root, {"conf.test.": ZONE, "2.0.192.in-addr.arpa.": REVERSE})
    try:
        yield server.port
    finally:
        server.stop()


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A UDP port that takes queries and never answers, so a query can only time out."""
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))
        yield port


def fake() -> FakeResolver:
    resolver = FakeResolver(RECORDS)
    resolver.fail(REFUSED)
    return resolver


@pytest.fixture(params=["nsd", "fake"])
def lookup(request: pytest.FixtureRequest) -> DnsLookup:
    if request.param == "fake":
        return fake()
    port: int = request.getfixturevalue("nsd_port")
    return DnsResolver(["127.0.0.1"], port=port, timeout=2.0)


async def answer(lookup: DnsLookup, name: str, rdtype: str) -> Answer:
    try:
        result = await lookup.query(name, rdtype)
    except DnsError as exc:
        return exc.failure
    assert result.authenticated is False  # nsd never sets AD; neither does a default fake
    return tuple(sorted(result.records))


@pytest.mark.parametrize(("name", "rdtype", "expected"), CASES, ids=[f"{n[:40]}/{t}" for n, t, _ in CASES])
async def test_same_answer(lookup: DnsLookup, name: str, rdtype: str, expected: Answer) -> None:
    assert await answer(lookup, name, rdtype) == expected


async def test_failures_say_whether_a_retry_can_help(lookup: DnsLookup) -> None:
    permanence = {}
    for name, failure in (("nope.conf.test", "nxdomain"), (REFUSED, "servfail"), ("a..b", "invalid")):
        with pytest.raises(DnsError) as info:
            await lookup.query(name, "A")
        permanence[failure] = info.value.permanent
    assert permanence == {"nxdomain": True, "servfail": False, "invalid": True}


@pytest.fixture(params=["nsd", "fake"])
def silent(request: pytest.FixtureRequest) -> Callable[[str], DnsLookup]:
    """A lookup whose server never answers the given name."""
    if request.param == "fake":
        return lambda name: FakeResolver(RECORDS, timeouts=[name])
    port: int = request.getfixturevalue("blackhole")
    return lambda name: DnsResolver(["127.0.0.1"], port=port, timeout=0.3)


async def test_no_answer_is_a_timeout_and_transient(silent: Callable[[str], DnsLookup]) -> None:
    with pytest.raises(DnsError) as info:
        await silent("a.conf.test").query("a.conf.test", "A")
    assert info.value.failure is DnsFailure.TIMEOUT
    assert not info.value.permanent


async def test_the_fake_reports_the_ad_flag_it_was_given() -> None:
    resolver = FakeResolver(RECORDS, authenticated=True)
    assert (await resolver.query("a.conf.test", "A")).authenticated is True
    assert (await resolver.query("v6only.conf.test", "A")).authenticated is True
    assert resolver.queries == [("a.conf.test", "A"), ("v6only.conf.test", "A")]


# -- the AD flag, through a validating resolver ----------------------------------------------------

DNSSEC_SOA = "@ IN SOA ns.{o}. admin.{o}. 1 3600 600 86400 60\n@ IN NS ns.{o}.\nns IN A 127.0.0.1\n"
SIGNED_BODY = 'a IN A 192.0.2.1\n_dmarc IN TXT "v=DMARC1; p=reject"\n'
SECURE_RECORDS = {
    ("a.signed.test", "A"): ["192.0.2.1"],
    ("_dmarc.signed.test", "TXT"): ["v=DMARC1; p=reject"],
    ("a.plain.test", "A"): ["192.0.2.1"],
}
# (name, type, (sorted records, authenticated) or the failure)
SECURE_CASES: list[tuple[str, str, tuple[tuple[str, ...], bool] | DnsFailure]] = [
    ("a.signed.test", "A", (("192.0.2.1",), True)),
    ("_dmarc.signed.test", "TXT", (("v=DMARC1; p=reject",), True)),
    ("a.signed.test", "TXT", ((), True)),  # an authenticated denial of the type
    ("nope.signed.test", "A", DnsFailure.NXDOMAIN),
    ("a.plain.test", "A", (("192.0.2.1",), False)),  # an unsigned zone is answered, not vouched for
    ("a.bogus.test", "A", DnsFailure.SERVFAIL),  # bogus data is a server failure (RFC 4035 §5.5)
]


@pytest.fixture(scope="module")
def validating_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.dnssec import missing_servers, signed_zone, start_validating_resolver, unsigned_zone

    why = missing_servers()
    if why is not None:
        pytest.skip(why)
    signed = signed_zone("signed.test", DNSSEC_SOA.format(o="signed.test") + SIGNED_BODY)
    bogus = signed_zone(
        "bogus.test",
        DNSSEC_SOA.format(o="bogus.test") + SIGNED_BODY,
        anchor_key=ec.generate_private_key(ec.SECP256R1()),
    )
    plain = unsigned_zone("plain.test", DNSSEC_SOA.format(o="plain.test") + SIGNED_BODY)
    server = start_validating_resolver(
        tmp_path_factory.mktemp("dnssec"),
        {"signed.test": signed.text, "bogus.test": bogus.text, "plain.test": plain},
        anchors=[signed.anchor, bogus.anchor],
        insecure=["plain.test"],
    )
    try:
        yield server.port
    finally:
        server.stop()


@pytest.fixture(params=["unbound", "fake"])
def validating(request: pytest.FixtureRequest) -> DnsLookup:
    if request.param == "fake":
        resolver = FakeResolver(SECURE_RECORDS, secure_zones=["signed.test"])
        resolver.fail("a.bogus.test")
        return resolver
    port: int = request.getfixturevalue("validating_port")
    return DnsResolver(["127.0.0.1"], port=port, timeout=5.0)


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"), SECURE_CASES, ids=[f"{n}/{t}" for n, t, _ in SECURE_CASES]
)
async def test_the_ad_flag_of_a_validating_resolver(
    validating: DnsLookup, name: str, rdtype: str, expected: tuple[tuple[str, ...], bool] | DnsFailure
) -> None:
    try:
        result = await validating.query(name, rdtype)
    except DnsError as exc:
        assert exc.failure == expected
        return
    assert (tuple(sorted(result.records)), result.authenticated) == expected
