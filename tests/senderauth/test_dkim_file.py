"""DKIM and ARC verification of a message kept in a file against the same verification in memory.

Every check here is differential: ``verify_dkim_file`` / ``verify_arc_file`` over a MessageFile
must give results equal to ``verify_dkim`` / ``verify_arc`` over the same bytes, for messages
signed here (RSA and Ed25519, every canonicalisation, ``l=``, several signatures, odd bodies,
tampering), the ARC conformance suite and real signed mail. The body is read in pieces of 1, 3,
7 bytes and the default size, so every piece edge falls in every place a canonicalisation
carries state across (a CRLF, a WSP run, trailing empty lines, a missing last CRLF).
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import inspect
import re
import tarfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import pytest
import yaml
from dkim.canonicalization import Relaxed, Simple
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.filters.agents.senderauth import SenderAuth
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.headers import header_end, parse_headers
from edgeward.message_file import CHUNK, MessageFile
from edgeward.ports import DnsAnswer, DnsError, DnsFailure, DnsLookup
from edgeward.senderauth.arc import MAX_ARC_FIELDS, ArcStatus, verify_arc, verify_arc_file
from edgeward.senderauth.arcseal import seal
from edgeward.senderauth.bodyhash import BodyDigests, FileDKIM, body_start
from edgeward.senderauth.dkim import MAX_SIGNATURES, DkimStatus, verify_dkim, verify_dkim_file
from edgeward.testing.dns import FakeResolver
from edgeward.types import Peer

from .dkimkeys import SigningKey, ed25519_key, rsa_key

CORPORA = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora"
CHUNKS = (1, 3, 7, CHUNK)

HEADER = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: quarterly figures\r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
)

BODIES = {
    "plain": b"The figures are attached.\r\n",
    "empty": b"",
    "only-crlf": b"\r\n",
    "trailing-blank-lines": b"Line one\r\n\r\n\r\n\r\n",
    "blank-lines-then-text": b"\r\n\r\n\r\nafter blanks\r\n\r\n",
    "no-final-crlf": b"no line end at the end",
    "no-final-crlf-trailing-wsp": b"last line  \t ",
    "wsp-runs": b"a  \t b\t\t\tc   \r\n \t \r\n  lead\r\n\ttab  \r\n",
    "wsp-only-lines": b"x\r\n   \r\n\t\r\n \t \r\n",
    "lf-only": b"unix\nline ends\n\n\n",
    "mixed-line-ends": b"a\r\nb\nc\r\n\nd \n\r\n",
    "bare-cr": b"a\rb\r\r\nc \r\r\n\r",
    "cr-before-blank": b"text\r\r\n\r\n\r\n",
    "spaces-then-cr": b"a   \r",
    "long-wsp-runs": b" " * 5000 + b"x\r\n" + b"\t " * 3000 + b"\r\n" + b" " * 4097,
    "long": b"".join(b"line %d with  spaces \t\r\n" % n for n in range(300)) + b"\r\n\r\n",
}
CANONS = [(h, b) for h in (b"simple", b"relaxed") for b in (b"simple", b"relaxed")]


@pytest.fixture(scope="module")
def rsa() -> SigningKey:
    return rsa_key(2048)


@pytest.fixture(scope="module")
def ed() -> SigningKey:
    return ed25519_key()


def file_of(tmp_path: Path, message: bytes, name: str = "msg") -> MessageFile:
    """The message as the receiving side keeps it: header block in memory, all of it in the file
    (so ``body_offset`` is not zero), split where ``header_end`` splits it."""
    path = tmp_path / name
    path.write_bytes(b"spool-prefix" + message)
    end = header_end(message)
    return MessageFile(path, message[:end], end + len(b"spool-prefix"), len(message) + len(b"spool-prefix"))


def sign(
    message: bytes,
    key: SigningKey,
    selector: str = "s1",
    canon: tuple[bytes, bytes] = (b"relaxed", b"simple"),
    length: bool = False,
) -> bytes:
    field = dkim.sign(
        message,
        selector.encode(),
        b"example.com",
        key.private,
        signature_algorithm=key.algorithm,
        canonicalize=canon,
        length=length,
    )
    return bytes(field) + message


class Offline:
    """A resolver whose every query times out: real mail's keys do not resolve here."""

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        raise DnsError(f"{name}/{rdtype}: DNS timeout", DnsFailure.TIMEOUT)


def resolver(**keys: SigningKey) -> FakeResolver:
    dns = FakeResolver()
    for selector, key in keys.items():
        dns.add(f"{selector}._domainkey.example.com", "TXT", key.record)
    return dns


async def same_dkim(tmp_path: Path, message: bytes, dns: DnsLookup, **kwargs: int) -> None:
    expected = await verify_dkim(message, dns, **kwargs)
    spooled = file_of(tmp_path, message)
    for chunk in CHUNKS:
        assert await verify_dkim_file(spooled, dns, chunk=chunk, **kwargs) == expected, chunk


async def same_arc(tmp_path: Path, message: bytes, dns: DnsLookup) -> None:
    expected = await verify_arc(message, dns)
    spooled = file_of(tmp_path, message)
    for chunk in CHUNKS:
        assert await verify_arc_file(spooled, dns, chunk=chunk) == expected, chunk


# --- the canonicalisations themselves -------------------------------------------------------


def _dkimpy_body(body: bytes) -> bytes:
    return b"\r\n".join(re.split(b"\r?\n", body))  # what dkim.rfc822_parse makes of a body


def _check_canonical(body: bytes, chunk: int) -> None:
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    digests = BodyDigests(lambda: iter(pieces))
    for name, algorithm in ((b"simple", Simple), (b"relaxed", Relaxed)):
        canonical = algorithm.canonicalize_body(_dkimpy_body(body))
        for length in (None, 0, 1, 5, len(canonical) - 1, len(canonical) + 10, -1, -3):
            part = canonical if length is None else canonical[:length]
            got = digests.digest((name, hashlib.sha256, length))
            assert got == hashlib.sha256(part).digest(), (body, chunk, name, length)
        assert digests.canonical_length(name) == len(canonical)


@pytest.mark.parametrize("name", sorted(BODIES))
def test_canonical_body_equals_dkimpy(name: str) -> None:
    for chunk in (1, 2, 3, 5, 7, 64):
        _check_canonical(BODIES[name], chunk)


@settings(max_examples=800, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"a", b"b", b" ", b"\t", b"\r", b"\n", b"\r\n", b"  ", b"\r\n\r\n"]), max_size=40
    ),
    st.integers(1, 9),
)
def test_canonical_body_equals_dkimpy_on_random_bodies(parts: list[bytes], chunk: int) -> None:
    _check_canonical(b"".join(parts), chunk)


def test_one_pass_serves_every_triple() -> None:
    reads = 0

    def pieces() -> list[bytes]:
        nonlocal reads
        reads += 1
        return [b"body  \r\n", b"\r\n"]

    digests = BodyDigests(pieces)
    triples = [
        (c, h, n) for c in (b"simple", b"relaxed") for h in (hashlib.sha256, hashlib.sha1) for n in (None, 3)
    ]
    digests.compute(triples)
    for triple in triples:
        digests.digest(triple)
    digests.canonical_length(b"simple")
    assert reads == 1


def test_body_start_is_where_dkimpy_starts_the_body() -> None:
    for message in (
        HEADER + b"body\r\n",
        b"A: b\n\nC: d\r\n\r\nbody",  # dkimpy ends the header at the LF LF, before header_end
        b"A: b\r\n\n",
        b"\r\nbody",
        b"A: b\r\n",
        b"",
    ):
        headers, body = dkim.rfc822_parse(message)
        start = body_start(message[: header_end(message)])
        assert start is not None
        assert _dkimpy_body(message[start:]) == body, message
        assert dkim.rfc822_parse(message[:start])[0] == headers
    assert body_start(b"A: b") is None


def test_dkimpy_still_hashes_the_body_where_the_hook_expects() -> None:
    # The hook repeats what dkimpy's verify_sig_process does before the body hash and removes bh
    # from its copy of the tags; that is sound only while dkimpy reads the body in that one
    # place, under "if b'bh' in sig", and signs the raw field rather than the tag dict.
    source = inspect.getsource(dkim.DomainSigner.verify_sig_process)
    assert source.count("self.body") == 1
    assert source.index("if b'bh' in sig:") < source.index("canonicalize_body(self.body)")
    assert source.index("self.tlsrpt == 'strict'") < source.index("from_c_value") < source.index("if b'bh'")
    assert "hash_headers(\n        h, canon_policy, headers, include_headers, sig_header, sig)" in source
    assert "RE_BTAG.sub(b'\\\\1',sigheader[1])" in inspect.getsource(dkim.hash_headers)


def test_a_body_hash_mismatch_is_dkimpys_own_error(tmp_path: Path, rsa: SigningKey) -> None:
    signed = sign(HEADER + b"original\r\n", rsa)
    changed = signed.replace(b"original", b"altered!")
    expected = dkim.DKIM(changed)
    with pytest.raises(dkim.ValidationError) as in_memory:
        expected.verify(dnsfunc=lambda name, timeout=5: rsa.record.encode())
    spooled = file_of(tmp_path, changed)
    verifier = FileDKIM(spooled.header, BodyDigests.of_file(spooled, body_start(spooled.header)))
    with pytest.raises(dkim.ValidationError) as in_file:
        verifier.verify(dnsfunc=lambda name, timeout=5: rsa.record.encode())
    assert str(in_file.value) == str(in_memory.value)
    assert verifier.body is None


# --- DKIM: signed here ----------------------------------------------------------------------


@pytest.mark.parametrize("body", sorted(BODIES))
@pytest.mark.parametrize("canon", CANONS, ids=lambda c: b"/".join(c).decode())
async def test_rsa_signed_bodies(
    tmp_path: Path, rsa: SigningKey, body: str, canon: tuple[bytes, bytes]
) -> None:
    message = sign(HEADER + BODIES[body], rsa, canon=canon)
    result = await verify_dkim(message, resolver(s1=rsa))
    assert result.signatures[0].status is DkimStatus.PASS, result
    await same_dkim(tmp_path, message, resolver(s1=rsa))


@pytest.mark.parametrize("body", sorted(BODIES))
async def test_ed25519_signed_bodies(tmp_path: Path, ed: SigningKey, body: str) -> None:
    for canon in CANONS:
        message = sign(HEADER + BODIES[body], ed, "ed", canon=canon)
        await same_dkim(tmp_path, message, resolver(ed=ed))


@pytest.mark.parametrize("body", ["plain", "trailing-blank-lines", "wsp-runs", "no-final-crlf", "empty"])
async def test_length_limited_signatures(tmp_path: Path, rsa: SigningKey, body: str) -> None:
    for canon in CANONS:
        signed = sign(HEADER + BODIES[body], rsa, canon=canon, length=True)
        await same_dkim(tmp_path, signed, resolver(s1=rsa))
        # Text added after the signed length still passes, and both say how much is unsigned.
        appended = signed + b"\r\nAppended by someone else.\r\n"
        await same_dkim(tmp_path, appended, resolver(s1=rsa))
        result = await verify_dkim_file(file_of(tmp_path, appended), resolver(s1=rsa), chunk=3)
        assert result.signatures[0].body_length is not None


async def test_several_signatures(tmp_path: Path, rsa: SigningKey, ed: SigningKey) -> None:
    message = HEADER + BODIES["wsp-runs"]
    once = sign(message, rsa, "s1", canon=(b"relaxed", b"relaxed"))
    twice = sign(once, ed, "ed", canon=(b"simple", b"simple"))
    thrice = sign(twice, rsa, "s2", canon=(b"relaxed", b"simple"), length=True)
    dns = resolver(s1=rsa, ed=ed, s2=rsa)
    await same_dkim(tmp_path, thrice, dns)
    assert [s.status for s in (await verify_dkim(thrice, dns)).signatures] == [DkimStatus.PASS] * 3
    # One key missing, one wrong: each signature keeps its own verdict on both paths.
    await same_dkim(tmp_path, thrice, resolver(s1=rsa, ed=ed, s2=ed))
    await same_dkim(tmp_path, thrice, resolver(s1=rsa))
    await same_dkim(tmp_path, thrice, dns, max_signatures=2)


TAMPERINGS = {
    "word-changed": lambda m: m.replace(b"line 7 with", b"line 8 with"),
    "text-appended": lambda m: m + b"P.S. one more thing\r\n",
    "blank-lines-appended": lambda m: m + b"\r\n\r\n\r\n",
    "spaces-added": lambda m: m.replace(b"with  spaces", b"with   spaces  "),
    "line-end-removed": lambda m: m[:-2] if m.endswith(b"\r\n") else m,
    "body-truncated": lambda m: m[: len(m) - 40],
    "subject-changed": lambda m: m.replace(b"quarterly", b"monthly"),
    "lf-line-ends": lambda m: m.replace(b"\r\n", b"\n"),
    "bh-altered": lambda m: re.sub(rb"bh=[A-Za-z0-9+/]", b"bh=A", m, count=1),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERINGS))
async def test_tampered_messages_fail_alike(tmp_path: Path, rsa: SigningKey, tamper: str) -> None:
    for canon in CANONS:
        for length in (False, True):
            signed = sign(HEADER + BODIES["long"], rsa, canon=canon, length=length)
            changed = TAMPERINGS[tamper](signed)
            await same_dkim(tmp_path, changed, resolver(s1=rsa))
    changed = TAMPERINGS["word-changed"](sign(HEADER + BODIES["long"], rsa))
    [sig] = (await verify_dkim_file(file_of(tmp_path, changed), resolver(s1=rsa), chunk=7)).signatures
    assert (sig.status, sig.reason) == (DkimStatus.FAIL, "body hash did not verify")


ODD_MESSAGES = {
    "unsigned": HEADER + b"hello\r\n",
    "no-body": HEADER,
    "header-only-no-blank-line": HEADER[:-2],
    "lf-blank-line-inside-header": b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s1; h=from; "
    b"bh=AAAA; b=AAAA\r\nFrom: a@example.com\n\nX: y\r\n\r\nbody\r\n",
    "leading-continuation": b" folded\r\nDKIM-Signature: v=1\r\n\r\nbody\r\n",
    "malformed-signature": b"DKIM-Signature: v=1; a=rsa-sha256; bh\r\nFrom: a@example.com\r\n\r\nbody\r\n",
    "bad-c": b"DKIM-Signature: v=1; a=rsa-sha256; c=odd/odd; d=example.com; s=s1; h=from; bh=AAAA; b=AAAA\r\n"
    b"From: a@example.com\r\n\r\nbody\r\n",
    "bad-l": b"DKIM-Signature: v=1; a=rsa-sha256; l=ten; d=example.com; s=s1; h=from; bh=AAAA; b=AAAA\r\n"
    b"From: a@example.com\r\n\r\nbody\r\n",
    "negative-l": b"DKIM-Signature: v=1; a=rsa-sha256; l=-3; d=example.com; s=s1; h=from; bh=AAAA; b=AAAA\r\n"
    b"From: a@example.com\r\n\r\nbody\r\n",
    "mbox-from-line": b"From alice@example.com Tue Dec  1 10:00:00 2026\r\n" + HEADER + b"body\r\n",
}


@pytest.mark.parametrize("name", sorted(ODD_MESSAGES))
async def test_odd_messages(tmp_path: Path, rsa: SigningKey, name: str) -> None:
    await same_dkim(tmp_path, ODD_MESSAGES[name], resolver(s1=rsa))
    await same_arc(tmp_path, ODD_MESSAGES[name], resolver(s1=rsa))


async def test_negative_length_signed_by_hand(tmp_path: Path, rsa: SigningKey) -> None:
    # dkimpy slices body[:l], so l=-2 covers all but the last two canonical bytes: the file path
    # must reach the same verdict even on a limit no signer should write.
    message = HEADER + b"body text\r\n"
    canonical = Simple.canonicalize_body(message[header_end(message) :])
    bh = base64.b64encode(hashlib.sha256(canonical[:-2]).digest())
    signed = sign(message, rsa, canon=(b"relaxed", b"simple"))
    forged = re.sub(rb"bh=[A-Za-z0-9+/=]+", b"l=-2; bh=" + bh, signed, count=1)
    await same_dkim(tmp_path, forged, resolver(s1=rsa))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.sampled_from([b"word", b" ", b"\t", b"\r\n", b"\n", b"\r", b"  \r\n", b"\r\n\r\n"]), max_size=30
    ),
    st.sampled_from(CANONS),
    st.booleans(),
    st.sampled_from(["none", "append", "space", "flip"]),
)
async def test_random_signed_bodies(
    tmp_path: Path, ed: SigningKey, parts: list[bytes], canon: tuple[bytes, bytes], length: bool, tamper: str
) -> None:
    signed = sign(HEADER + b"".join(parts), ed, "ed", canon=canon, length=length)
    if tamper == "append":
        signed += b"more\r\n"
    elif tamper == "space":
        signed += b" "
    elif tamper == "flip" and signed.endswith(b"word"):
        signed = signed[:-4] + b"Word"
    await same_dkim(tmp_path, signed, resolver(ed=ed))


# --- ARC ------------------------------------------------------------------------------------


def _hop(message: bytes, key: SigningKey, domain: str) -> bytes:
    stamped = b"Authentication-Results: " + domain.encode() + b"; spf=pass\r\n" + message
    fields = seal(
        stamped,
        selector="arc",
        domain=domain,
        private_key=key.private,
        authserv_id=domain,
        include_headers=["from", "to", "subject", "date"],
        timestamp=1764583200,
    )
    return b"".join(fields) + stamped


@pytest.mark.parametrize("body", ["plain", "trailing-blank-lines", "wsp-runs", "no-final-crlf", "bare-cr"])
async def test_arc_chains(tmp_path: Path, rsa: SigningKey, body: str) -> None:
    dns = FakeResolver({(f"arc._domainkey.{d}", "TXT"): [rsa.record] for d in ("a.example", "b.example")})
    first = _hop(HEADER + BODIES[body], rsa, "a.example")
    second = _hop(first, rsa, "b.example")
    assert (await verify_arc(second, dns)).status is ArcStatus.PASS
    await same_arc(tmp_path, second, dns)
    await same_arc(tmp_path, second + b"tampered\r\n", dns)
    await same_arc(tmp_path, second.replace(b"quarterly", b"monthly"), dns)
    await same_arc(tmp_path, second, FakeResolver(timeouts=["arc._domainkey.b.example"]))


def _arc_suite() -> list[tuple[str, bytes, dict[str, str]]]:
    path = CORPORA / "auth" / "arc-validation-tests.yml"
    if not path.exists():
        return []
    cases = []
    with path.open() as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            records = {k: v.replace("\n", "") for k, v in (doc.get("txt-records") or {}).items()}
            for name, test in doc["tests"].items():
                text = test["message"].replace("\r\n", "\n").replace("\n", "\r\n").encode()
                cases.append((name, text, records))
    return cases


async def test_arc_conformance_suite(tmp_path: Path) -> None:
    cases = _arc_suite()
    if not cases:
        pytest.skip(f"{CORPORA / 'auth'} is missing: the conformance corpora sit beside the repository")
    for name, message, records in cases:
        dns = FakeResolver({(k, "TXT"): [v] for k, v in records.items()})
        expected = await verify_arc(message, dns)
        spooled = file_of(tmp_path, message)
        for chunk in (1, 7, CHUNK):
            assert await verify_arc_file(spooled, dns, chunk=chunk) == expected, (name, chunk)
        # The suite's messages carry DKIM signatures too.
        await same_dkim(tmp_path, message, dns)


# --- real signed mail -----------------------------------------------------------------------


def _modern() -> list[tuple[str, bytes]]:
    folder = CORPORA / "modern"
    messages: list[tuple[str, bytes]] = []
    for archive in sorted(folder.glob("*.tar.gz")):
        with tarfile.open(archive) as tar:
            for member in tar:
                f = tar.extractfile(member) if member.isfile() else None
                if f is None:
                    continue
                data = f.read()
                head = data[: header_end(data)].lower()
                if b"dkim-signature" in head or b"arc-seal" in head:
                    messages.append((member.name, data))
    return messages


async def test_real_signed_mail(tmp_path: Path) -> None:
    messages = _modern()
    if not messages:
        pytest.skip(f"{CORPORA / 'modern'} is missing: the corpora sit beside the repository")
    empty = FakeResolver()  # every key NXDOMAIN: permerror
    for name, raw in messages:
        # Some archives keep LF line ends; the receiving side stores CRLF.
        message = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        dns: Offline | FakeResolver
        for dns in (Offline(), empty):
            expected = await verify_dkim(message, dns)
            spooled = file_of(tmp_path, message)
            for chunk in (7, CHUNK):
                assert await verify_dkim_file(spooled, dns, chunk=chunk) == expected, name
                assert await verify_arc_file(spooled, dns, chunk=chunk) == await verify_arc(message, dns), (
                    name
                )
        # The raw bytes, whatever their line ends, agree as well.
        assert await verify_dkim_file(file_of(tmp_path, raw), empty) == await verify_dkim(raw, empty), name
    assert len(messages) > 20


# --- memory ---------------------------------------------------------------------------------


TEN_MB = 10 * 1024 * 1024
_LINE = b"0123456789 abcdefghij  \t ABCDEFGHIJ 0123456789 abcdefghij ABCDEFGHIJ 01234\r\n"
LARGE_BODIES: dict[str, Callable[[], bytes]] = {  # made in the test: 10 MB each
    "text": lambda: _LINE * (TEN_MB // len(_LINE)) + b"\r\n\r\n",
    # The worst for the canonicalisations: a WSP run at every other byte, bare LFs, a megabyte of
    # spaces and megabytes of empty lines, none of which may be held in memory as it comes.
    "hostile": lambda: (
        b"a\t" * (TEN_MB // 6) + b"b \n" * (TEN_MB // 12) + b" " * 2**20 + b"\r\n" * (TEN_MB // 6) + b"x"
    ),
}


@pytest.mark.parametrize("kind", sorted(LARGE_BODIES))
async def test_ten_megabyte_message_stays_under_two_megabytes(
    tmp_path: Path, rsa: SigningKey, kind: str
) -> None:
    body = LARGE_BODIES[kind]()
    message = sign(HEADER + body, rsa, canon=(b"relaxed", b"relaxed"))
    message = sign(message, rsa, "s2", canon=(b"simple", b"simple"))
    spooled = file_of(tmp_path, message)
    dns = resolver(s1=rsa, s2=rsa)
    del message, body
    gc.collect()
    tracemalloc.start()
    try:
        result = await verify_dkim_file(spooled, dns)
        arc = await verify_arc_file(spooled, dns)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [s.status for s in result.signatures] == [DkimStatus.PASS, DkimStatus.PASS]
    assert arc.status is ArcStatus.NONE
    assert spooled.size > TEN_MB
    assert peak < 2 * 1024 * 1024, peak


# --- the agent ------------------------------------------------------------------------------


async def test_agent_reads_a_spooled_message_from_its_file(tmp_path: Path, rsa: SigningKey) -> None:
    signed = _hop(sign(HEADER + BODIES["long"], rsa, canon=(b"relaxed", b"relaxed")), rsa, "a.example")
    dns = resolver(s1=rsa)
    dns.add("arc._domainkey.a.example", "TXT", rsa.record)
    dns.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject")
    info = SessionInfo("s1", Peer("192.0.2.1", 1234), ReceiveConnectorConfig(name="internet"), helo="mx.x")
    agent = SenderAuth(dns, "gw.example.net")
    for message in (signed, signed.replace(b"line 7 ", b"line 8 ")):
        headers = parse_headers(message)
        in_memory = StageContext(Stage.EOD, info, data=message, headers=headers)
        in_file = StageContext(Stage.EOD, info, spooled=file_of(tmp_path, message), headers=headers)
        assert await agent.check(Stage.EOD, in_file) == await agent.check(Stage.EOD, in_memory)
    outcome = await agent.check(Stage.EOD, StageContext(Stage.EOD, info, spooled=file_of(tmp_path, signed)))
    assert {"DKIM_PASS", "ARC_PASS"} <= {f.name for f in outcome.findings}


async def test_one_pass_serves_dkim_and_arc(tmp_path: Path, rsa: SigningKey) -> None:
    # Over the inline limit, so both checks run in worker threads at once and share the digests.
    body = BODIES["long"] * 50 + BODIES["wsp-runs"]
    # No two signatures share a body hash, so a check that found no planned digest would read again.
    once = sign(HEADER + body, rsa, canon=(b"relaxed", b"simple"))
    twice = sign(once, rsa, "s2", canon=(b"relaxed", b"relaxed"), length=True)
    message = _hop(_hop(twice, rsa, "a.example"), rsa, "b.example")
    dns = resolver(s1=rsa, s2=rsa)
    for domain in ("a.example", "b.example"):
        dns.add(f"arc._domainkey.{domain}", "TXT", rsa.record)
    spooled = file_of(tmp_path, message)
    passes = 0

    def pieces() -> Iterator[bytes]:
        nonlocal passes
        passes += 1
        yield from spooled.chunks(body_start(spooled.header) or 0)

    for planned, expected_passes in ((True, 1), (False, 2)):
        passes = 0
        digests = BodyDigests(pieces)
        if planned:
            digests.plan_header(spooled.header, MAX_SIGNATURES, MAX_ARC_FIELDS)
        dkim_result, arc_result = await asyncio.gather(
            verify_dkim_file(spooled, dns, digests=digests), verify_arc_file(spooled, dns, digests=digests)
        )
        assert dkim_result == await verify_dkim(message, dns)
        assert arc_result == await verify_arc(message, dns)
        assert [s.status for s in dkim_result.signatures] == [DkimStatus.PASS] * 2
        assert arc_result.status is ArcStatus.PASS
        assert passes == expected_passes
