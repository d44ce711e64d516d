"""DANE for SMTP: TLSA matching on trustme chains, lookups through a real validating resolver.

The unit tests check :func:`usable` and :func:`verify` on certificates from trustme (a root, an
intermediate and leaves) and a few hand-made forgeries. The integration tests run unbound as a
validating resolver in front of nsd, serving a signed zone ``dane.test``, an unsigned zone
``plain.test`` and two zones that validate as bogus (``bogus.test``: signed with a key the trust
anchor does not name; ``expired.test``: signatures expired).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from cryptography.x509.oid import NameOID

from edgeward.delivery.dane import DanePolicy, TlsaRecord, lookup, peer_chain, usable, verify
from edgeward.net.dns import DnsResolver
from edgeward.ports import MxHost, ResolverError
from tests.dnssec import (
    missing_servers,
    signed_zone,
    start_validating_resolver,
    tlsa_data,
    tlsa_line,
    unsigned_zone,
)

NAMES = ["mx.dane.test", "dane.test"]
UTC = datetime.UTC


def der(blob: trustme.Blob) -> bytes:
    return ssl.PEM_cert_to_DER_cert(blob.bytes().decode())


def record(usage: int, selector: int, mtype: int, cert: bytes) -> TlsaRecord:
    return TlsaRecord(usage, selector, mtype, tlsa_data(cert, selector, mtype))


@dataclass(frozen=True)
class Pki:
    root: trustme.CA
    inter: trustme.CA
    leaf: trustme.LeafCert
    root_der: bytes
    inter_der: bytes
    leaf_der: bytes

    @property
    def chain(self) -> list[bytes]:
        return [self.leaf_der, self.inter_der]

    def issue(self, *names: str, **kw: datetime.datetime) -> list[bytes]:
        """A chain, leaf first, for a new leaf from the intermediate."""
        return [der(self.inter.issue_cert(*names, **kw).cert_chain_pems[0]), self.inter_der]


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = trustme.CA()
    inter = root.create_child_ca()
    leaf = inter.issue_cert("mx.dane.test")
    return Pki(root, inter, leaf, der(root.cert_pem), der(inter.cert_pem), der(leaf.cert_chain_pems[0]))


def forge(
    subject: x509.Name,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    dns_names: tuple[str, ...] = (),
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """A certificate with any names, signed by ``signer``; and its own key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    return builder.sign(signer, hashes.SHA256()).public_bytes(Encoding.DER), key


def cn(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


# -- usable -------------------------------------------------------------------------------------


def test_usable_keeps_dane_ta_and_dane_ee_with_known_selector_and_type() -> None:
    keep = [TlsaRecord(2, 0, 1, b"a"), TlsaRecord(3, 1, 2, b"b"), TlsaRecord(3, 0, 0, b"c")]
    drop = [
        TlsaRecord(0, 0, 1, b"d"),  # PKIX-TA: RFC 7672 §3.1.3
        TlsaRecord(1, 1, 1, b"e"),  # PKIX-EE
        TlsaRecord(4, 1, 1, b"f"),
        TlsaRecord(3, 2, 1, b"g"),
        TlsaRecord(3, 1, 3, b"h"),
    ]
    assert usable(drop[:2] + keep + drop[2:]) == tuple(keep)


def test_pkix_usages_never_authenticate(pki: Pki) -> None:
    records = [record(1, 0, 1, pki.leaf_der), record(0, 0, 1, pki.inter_der)]
    assert verify(records, pki.chain, NAMES) == "no usable TLSA records"


# -- DANE-EE ------------------------------------------------------------------------------------


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ee_matches_certificate_or_key(pki: Pki, selector: int, mtype: int) -> None:
    assert verify([record(3, selector, mtype, pki.leaf_der)], pki.chain, NAMES) is None


def test_dane_ee_checks_neither_names_nor_dates(pki: Pki) -> None:
    # RFC 7672 §3.1.1: the key is what is bound; the name and the validity period are not.
    expired = pki.issue("elsewhere.example", not_after=datetime.datetime(2001, 1, 1, tzinfo=UTC))
    assert verify([record(3, 1, 1, expired[0])], expired, ["mx.dane.test"]) is None
    assert verify([record(3, 0, 2, pki.leaf_der)], [pki.leaf_der], ["other.test"]) is None


def test_dane_ee_mismatch_gives_a_reason(pki: Pki) -> None:
    other = pki.issue("mx.dane.test")
    reason = verify([record(3, 1, 1, other[0])], pki.chain, NAMES)
    assert reason is not None and "DANE-EE" in reason


def test_dane_ee_on_the_intermediate_does_not_match_the_leaf(pki: Pki) -> None:
    assert verify([record(3, 0, 1, pki.inter_der)], pki.chain, NAMES) is not None


def test_any_matching_record_is_enough(pki: Pki) -> None:
    other = pki.issue("mx.dane.test")
    records = [record(3, 1, 1, other[0]), record(1, 1, 1, pki.leaf_der), record(3, 1, 2, pki.leaf_der)]
    assert verify(records, pki.chain, NAMES) is None


# -- DANE-TA ------------------------------------------------------------------------------------


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ta_on_the_intermediate(pki: Pki, selector: int, mtype: int) -> None:
    assert verify([record(2, selector, mtype, pki.inter_der)], pki.chain, NAMES) is None


def test_dane_ta_on_the_root_sent_in_the_chain_in_any_order(pki: Pki) -> None:
    ta = [record(2, 0, 1, pki.root_der)]
    assert verify(ta, [pki.leaf_der, pki.inter_der, pki.root_der], NAMES) is None
    assert verify(ta, [pki.leaf_der, pki.root_der, pki.inter_der], NAMES) is None


def test_dane_ta_certificate_must_be_in_the_chain(pki: Pki) -> None:
    reason = verify([record(2, 0, 1, pki.root_der)], pki.chain, NAMES)
    assert reason is not None and "trust anchor" in reason


def test_dane_ta_bare_public_key_signs_the_top_of_the_chain(pki: Pki) -> None:
    # DANE-TA SPKI Full(0) gives the anchor's key itself; the server need not send its certificate.
    assert verify([record(2, 1, 0, pki.root_der)], pki.chain, NAMES) is None
    assert verify([record(2, 1, 0, der(trustme.CA().cert_pem))], pki.chain, NAMES) is not None


def test_dane_ta_matching_only_the_leaf_is_not_an_anchor(pki: Pki) -> None:
    reason = verify([record(2, 0, 1, pki.leaf_der)], pki.chain, NAMES)
    assert reason is not None and "trust anchor" in reason


def test_dane_ta_leaf_must_name_the_mx_host_or_the_domain(pki: Pki) -> None:
    reason = verify([record(2, 0, 1, pki.inter_der)], pki.chain, ["mx.other.test", "other.test"])
    assert reason is not None and "mx.dane.test" in reason
    by_domain = pki.issue("dane.test")
    assert verify([record(2, 0, 1, pki.inter_der)], by_domain, ["mx1.dane.test", "dane.test"]) is None


def test_dane_ta_wildcard_stands_for_one_label(pki: Pki) -> None:
    chain = pki.issue("*.dane.test")
    ta = [record(2, 1, 1, pki.inter_der)]
    assert verify(ta, chain, ["MX.dane.test."]) is None
    assert verify(ta, chain, ["a.mx.dane.test"]) is not None
    assert verify(ta, chain, ["dane.test"]) is not None


def test_dane_ta_checks_the_validity_period(pki: Pki) -> None:
    ta = [record(2, 0, 1, pki.inter_der)]
    expired = pki.issue("mx.dane.test", not_after=datetime.datetime(2001, 1, 1, tzinfo=UTC))
    reason = verify(ta, expired, NAMES)
    assert reason is not None and "expired" in reason
    early = datetime.datetime(1999, 1, 1, tzinfo=UTC)  # trustme's certificates start in 2000
    reason = verify(ta, pki.chain, NAMES, now=early)
    assert reason is not None and "not yet valid" in reason


def test_dane_ta_rejects_a_leaf_with_a_forged_signature(pki: Pki) -> None:
    inter = x509.load_der_x509_certificate(pki.inter_der)
    # Same issuer name as the real intermediate, but signed by a key of the attacker's.
    forged, _ = forge(
        cn("mx.dane.test"),
        inter.subject,
        ec.generate_private_key(ec.SECP256R1()),
        ca=False,
        dns_names=("mx.dane.test",),
    )
    reason = verify([record(2, 0, 1, pki.inter_der)], [forged, pki.inter_der], NAMES)
    assert reason is not None and "trust anchor" in reason


def test_dane_ta_rejects_a_leaf_issued_by_a_non_ca(pki: Pki) -> None:
    inter = x509.load_der_x509_certificate(pki.inter_der)
    inter_key = load_pem_private_key(pki.inter.private_key_pem.bytes(), password=None)
    assert isinstance(inter_key, ec.EllipticCurvePrivateKey)
    # A genuine end-entity certificate of the intermediate, used to sign a certificate of its own.
    middle, middle_key = forge(cn("shop.other.test"), inter.subject, inter_key, ca=False)
    leaf, _ = forge(cn("mx.dane.test"), cn("shop.other.test"), middle_key, ca=False, dns_names=NAMES[:1])
    assert verify([record(2, 0, 1, pki.inter_der)], [leaf, middle, pki.inter_der], NAMES) is not None


def test_unparsable_or_missing_certificates(pki: Pki) -> None:
    ta = [record(2, 0, 1, pki.inter_der)]
    assert verify(ta, [], NAMES) == "the server sent no certificate"
    assert verify(ta, [b"not a certificate"], NAMES) is not None


# -- peer_chain ---------------------------------------------------------------------------------


async def test_peer_chain_from_a_real_tls_server(pki: Pki) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.leaf.configure_cert(server_ctx)
    finished = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                await writer.wait_closed()
            finished.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    try:
        port = server.sockets[0].getsockname()[1]
        # DANE clients authenticate by TLSA records alone, so PKIX is off as in delivery.
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.check_hostname = False
        client_ctx.verify_mode = ssl.CERT_NONE
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="mx.dane.test"
        )
        try:
            chain = peer_chain(writer.get_extra_info("ssl_object"))
        finally:
            writer.close()
            await writer.wait_closed()
        await finished.wait()
    finally:
        server.close()
        await server.wait_closed()
    assert chain == [pki.leaf_der, pki.inter_der]
    assert verify([record(2, 1, 1, pki.inter_der)], chain, NAMES) is None


def test_peer_chain_falls_back_to_the_leaf(pki: Pki) -> None:
    class LeafOnly:
        def getpeercert(self, binary_form: bool = False) -> bytes:
            assert binary_form
            return pki.leaf_der

    assert peer_chain(LeafOnly()) == [pki.leaf_der]  # type: ignore[arg-type]


# -- a validating resolver and signed zones -------------------------------------------------------

SOA = "@ IN SOA ns.{o}. admin.{o}. 1 3600 600 86400 60\n@ IN NS ns.{o}.\nns IN A 127.0.0.1\n"


@dataclass(frozen=True)
class Lab:
    port: int
    pki: Pki

    def resolver(self) -> DnsResolver:
        return DnsResolver(["127.0.0.1"], port=self.port, timeout=5.0)


@pytest.fixture(scope="module")
def lab(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """unbound validating ``dane.test`` (signed), ``plain.test`` (unsigned) and two bogus zones."""
    why = missing_servers()
    if why is not None:
        pytest.skip(why)
    dane = signed_zone(
        "dane.test",
        SOA.format(o="dane.test")
        + "@ IN MX 10 mx.dane.test.\n"
        + "mx IN A 127.0.0.1\n"
        + tlsa_line("_25._tcp.mx", 3, 1, 1, pki.leaf_der)
        + tlsa_line("_25._tcp.mx", 2, 0, 1, pki.inter_der)
        + "encrypt IN MX 10 pkix.dane.test.\n"
        + "pkix IN A 127.0.0.1\n"
        + tlsa_line("_25._tcp.pkix", 1, 1, 1, pki.leaf_der)
        + tlsa_line("_25._tcp.pkix", 0, 0, 1, pki.root_der)
        + "notlsa IN MX 10 bare.dane.test.\n"
        + "bare IN A 127.0.0.1\n"
        + "offsite IN MX 10 mx.plain.test.\n"
        + "broken IN MX 10 mx.bogus.test.\n"
        + "implicit IN A 127.0.0.1\n"
        + tlsa_line("_25._tcp.implicit", 3, 1, 1, pki.leaf_der),
    )
    plain = unsigned_zone(
        "plain.test",
        SOA.format(o="plain.test")
        + "@ IN MX 10 mx.plain.test.\n"
        + "mx IN A 127.0.0.1\n"
        + tlsa_line("_25._tcp.mx", 3, 1, 1, pki.leaf_der),
    )
    bogus_body = "@ IN MX 10 mx.{o}.\nmx IN A 127.0.0.1\n" + tlsa_line("_25._tcp.mx", 3, 1, 1, pki.leaf_der)
    bogus = signed_zone(
        "bogus.test",
        SOA.format(o="bogus.test") + bogus_body.format(o="bogus.test"),
        anchor_key=ec.generate_private_key(ec.SECP256R1()),
    )
    now = datetime.datetime.now(UTC)
    expired = signed_zone(
        "expired.test",
        SOA.format(o="expired.test") + bogus_body.format(o="expired.test"),
        inception=now - datetime.timedelta(days=10),
        expiration=now - datetime.timedelta(days=1),
    )
    server = start_validating_resolver(
        tmp_path_factory.mktemp("dnssec"),
        {z.origin: z.text for z in (dane, bogus, expired)} | {"plain.test": plain},
        anchors=[dane.anchor, bogus.anchor, expired.anchor],
        insecure=["plain.test"],
    )
    try:
        yield Lab(server.port, pki)
    finally:
        server.stop()


async def test_tlsa_secure_records_from_the_signed_zone(lab: Lab) -> None:
    answer = await lab.resolver().tlsa("mx.dane.test", 25)
    assert answer.secure
    assert set(answer.records) == {record(3, 1, 1, lab.pki.leaf_der), record(2, 0, 1, lab.pki.inter_der)}


async def test_tlsa_authenticated_denial(lab: Lab) -> None:
    for host, port in (("bare.dane.test", 25), ("mx.dane.test", 2525), ("nowhere.dane.test", 25)):
        answer = await lab.resolver().tlsa(host, port)
        assert answer.records == () and answer.secure, (host, port)


async def test_tlsa_from_an_unsigned_zone_is_insecure(lab: Lab) -> None:
    answer = await lab.resolver().tlsa("mx.plain.test", 25)
    assert answer.records == (record(3, 1, 1, lab.pki.leaf_der),)
    assert not answer.secure
    denial = await lab.resolver().tlsa("nowhere.plain.test", 25)
    assert denial.records == () and not denial.secure


@pytest.mark.parametrize("zone", ["bogus.test", "expired.test"])
async def test_bogus_answers_are_transient_failures(lab: Lab, zone: str) -> None:
    resolver = lab.resolver()
    for call in (
        resolver.tlsa(f"mx.{zone}", 25),
        resolver.mx_secure(zone),
        resolver.host_secure(f"mx.{zone}"),
    ):
        with pytest.raises(ResolverError) as info:
            await call
        assert not info.value.permanent


async def test_mx_secure(lab: Lab) -> None:
    resolver = lab.resolver()
    assert await resolver.mx_secure("dane.test")
    assert await resolver.mx_secure("implicit.dane.test")  # no MX: its own address records
    assert not await resolver.mx_secure("plain.test")


async def test_host_secure(lab: Lab) -> None:
    resolver = lab.resolver()
    assert await resolver.host_secure("mx.dane.test")
    assert not await resolver.host_secure("mx.plain.test")
    assert not await resolver.host_secure("127.0.0.1")


async def test_plain_lookups_still_work_through_the_validating_resolver(lab: Lab) -> None:
    resolver = lab.resolver()
    assert list(await resolver.mx("dane.test")) == [MxHost(10, "mx.dane.test")]
    assert list(await resolver.addresses("mx.dane.test")) == ["127.0.0.1"]


async def test_lookup_authenticate(lab: Lab) -> None:
    policy = await lookup(lab.resolver(), "dane.test", "mx.dane.test", 25)
    assert policy.state == "authenticate"
    assert set(policy.records) == {record(3, 1, 1, lab.pki.leaf_der), record(2, 0, 1, lab.pki.inter_der)}
    assert verify(policy.records, lab.pki.chain, NAMES) is None


async def test_lookup_implicit_mx(lab: Lab) -> None:
    policy = await lookup(lab.resolver(), "implicit.dane.test", "implicit.dane.test", 25)
    assert policy == DanePolicy((record(3, 1, 1, lab.pki.leaf_der),), "authenticate")


async def test_lookup_encrypt_when_no_record_is_usable(lab: Lab) -> None:
    policy = await lookup(lab.resolver(), "encrypt.dane.test", "pkix.dane.test", 25)
    assert policy.state == "encrypt"
    assert len(policy.records) == 2 and usable(policy.records) == ()


@pytest.mark.parametrize(
    ("domain", "host"),
    [
        ("notlsa.dane.test", "bare.dane.test"),  # secure, but no TLSA records
        ("plain.test", "mx.plain.test"),  # TLSA records exist, but nothing is signed
        ("offsite.dane.test", "mx.plain.test"),  # secure MX, insecure MX host
    ],
)
async def test_lookup_none(lab: Lab, domain: str, host: str) -> None:
    assert await lookup(lab.resolver(), domain, host, 25) == DanePolicy((), "none")


@pytest.mark.parametrize(
    ("domain", "host"), [("broken.dane.test", "mx.bogus.test"), ("bogus.test", "mx.bogus.test")]
)
async def test_lookup_bogus_is_transient(lab: Lab, domain: str, host: str) -> None:
    with pytest.raises(ResolverError) as info:
        await lookup(lab.resolver(), domain, host, 25)
    assert not info.value.permanent
