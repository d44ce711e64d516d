"""Fuzzing the envelope address grammar (``smtp.address``) and the MAIL/RCPT argument parsers.

Three kinds of input: addresses built from the RFC 5321 §4.1.2 grammar (which must be
accepted, in canonical form), the shared corpus' open-relay forms mutated, and arbitrary text.
Properties: only ``ProtocolError`` is raised, always with a 5xx address or syntax reply; what
is accepted is canonical (parsing ``str(address)`` again gives the same address, and the same
through ``MAIL FROM``/``RCPT TO``); the routing domain never holds an ``@``; no accepted
address is longer than the RFC limits.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeward.errors import ProtocolError
from edgeward.smtp.address import ATEXT, MAX_DOMAIN, MAX_LOCAL, MAX_PATH, parse_path
from edgeward.smtp.parse import ParamPolicy, parse_mail, parse_rcpt, xtext_decode, xtext_encode
from edgeward.types import Address
from tests.fuzz import seeds
from tests.fuzz.profiles import fuzz_settings

pytestmark = pytest.mark.fuzz

POLICY = ParamPolicy(auth=True, requiretls=True)
_ADDRESS_CODES = {501, 553, 550}


def _parse_or_refuse(text: str, *, utf8: bool, sender: bool) -> Address | None:
    try:
        return parse_path(text, utf8=utf8, sender=sender).address
    except ProtocolError as exc:
        assert exc.reply.code in _ADDRESS_CODES, exc.reply
        assert exc.reply.enhanced is not None and exc.reply.enhanced.startswith("5."), exc.reply
        return None


def _check_canonical(address: Address, *, utf8: bool, sender: bool) -> None:
    assert "@" not in address.domain
    assert address.domain == address.domain.lower()
    assert len(address.local.encode()) <= MAX_LOCAL
    assert len(address.domain.encode()) <= MAX_DOMAIN
    if address.is_null or not address.domain:
        return
    wire = str(address)
    assert len(wire.encode()) + 2 <= MAX_PATH
    assert parse_path(wire, utf8=utf8, sender=sender).address == address
    if sender:
        params = " SMTPUTF8" if utf8 else ""
        assert parse_mail(f"FROM:<{wire}>{params}", POLICY)[0].address == address
    else:
        assert parse_rcpt(f"TO:<{wire}>", POLICY, smtputf8=utf8)[0].address == address


# --- addresses from the grammar -----------------------------------------------------------------

_ATOM = st.text(sorted(ATEXT), min_size=1, max_size=10)
_DOT_STRING = st.lists(_ATOM, min_size=1, max_size=4).map(".".join)
_QTEXT = st.text([chr(c) for c in range(32, 127)], max_size=12)
_LABEL = st.from_regex(r"\A[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?\Z")
_TLD = st.from_regex(r"\A[a-zA-Z]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?\Z")
_HOSTNAME = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(_LABEL, max_size=3), _TLD)
_IPV4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
_IPV6 = st.ip_addresses(v=6).map(str)


def _quoted(content: str) -> str:
    return '"' + content.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def _grammar_address(draw: st.DrawFn) -> tuple[str, str, str]:
    """(path text, expected local part, expected domain) for a valid ASCII mailbox."""
    if draw(st.booleans()):
        local = draw(_DOT_STRING)
        text_local, expected_local = local, local
    else:
        content = draw(_QTEXT)
        text_local = _quoted(content)
        try:
            expected_local = parse_path(f"{content}@x.example", utf8=False, sender=False).address.local
            expected_local = content if expected_local == content else _quoted(content)
        except ProtocolError:
            expected_local = _quoted(content)
    kind = draw(st.sampled_from(["host", "v4", "v6"]))
    if kind == "host":
        domain = draw(_HOSTNAME)
        expected_domain = domain.lower()
    elif kind == "v4":
        ip = draw(_IPV4)
        domain, expected_domain = f"[{ip}]", f"[{ip}]"
    else:
        ip = draw(_IPV6)
        domain, expected_domain = f"[IPv6:{ip.upper()}]", f"[ipv6:{ip}]"
    route = ""
    if draw(st.booleans()):
        route = ",".join("@" + d for d in draw(st.lists(_HOSTNAME, min_size=1, max_size=2))) + ":"
    return f"{route}{text_local}@{domain}", expected_local, expected_domain


@fuzz_settings(2)
@given(_grammar_address(), st.booleans(), st.booleans())
def test_valid_addresses_are_accepted_in_canonical_form(
    case: tuple[str, str, str], utf8: bool, sender: bool
) -> None:
    text, local, domain = case
    fits = (
        len(local.encode()) <= MAX_LOCAL
        and len(domain.encode()) <= MAX_DOMAIN
        and len(text.encode()) + 2 <= MAX_PATH
    )
    address = _parse_or_refuse(text, utf8=utf8, sender=sender)
    if not fits:
        return
    assert address == Address(local, domain), text
    _check_canonical(address, utf8=utf8, sender=sender)


# --- mutated corpus forms and arbitrary text ------------------------------------------------------

_FORMS = seeds.relay_addresses()
_ALPHABET = st.sampled_from(
    [*'abAB09.-_@%!"\\[]:,<> \t\x00\x7f+=/é\uff20\u3002\u2024', "IPv6:", "::1", "\ufe6b"]
)


@pytest.mark.skipif(not _FORMS, reason=seeds.corpus_reason(seeds.SMTP_CORPORA))
@fuzz_settings(2)
@given(st.data(), st.booleans(), st.booleans())
def test_mutated_relay_forms(data: st.DataObject, utf8: bool, sender: bool) -> None:
    raw = data.draw(seeds.mutated([f.encode() for f in _FORMS]))
    text = raw.decode("utf-8", "replace")
    address = _parse_or_refuse(text, utf8=utf8, sender=sender)
    if address is not None:
        _check_canonical(address, utf8=utf8, sender=sender)


@fuzz_settings(3)
@given(
    st.one_of(st.text(max_size=80), st.lists(_ALPHABET, max_size=40).map("".join)),
    st.booleans(),
    st.booleans(),
)
def test_arbitrary_text(text: str, utf8: bool, sender: bool) -> None:
    address = _parse_or_refuse(text, utf8=utf8, sender=sender)
    if address is not None:
        _check_canonical(address, utf8=utf8, sender=sender)


_PARAM_TEXT = st.lists(
    st.one_of(
        st.sampled_from(
            ["SIZE=1", "BODY=8BITMIME", "SMTPUTF8", "RET=HDRS", "ENVID=x", "AUTH=<>", "REQUIRETLS"]
        ),
        st.sampled_from(["NOTIFY=NEVER", "NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;a+40b"]),
        st.text(max_size=12),
    ),
    max_size=4,
).map(" ".join)


@fuzz_settings(2)
@given(st.text(max_size=40), _PARAM_TEXT, st.booleans())
def test_mail_and_rcpt_arguments(path: str, params: str, utf8: bool) -> None:
    """Whole MAIL/RCPT arguments: ProtocolError with a 5xx, or values within their limits."""
    for keyword, call in (
        ("FROM:", lambda arg: parse_mail(arg, POLICY)),
        ("TO:", lambda arg: parse_rcpt(arg, POLICY, smtputf8=utf8)),
    ):
        arg = f"{keyword}<{path}> {params}".rstrip(" ")
        try:
            result = call(arg)
        except ProtocolError as exc:
            assert 500 <= exc.reply.code <= 599, exc.reply
            assert exc.reply.enhanced is not None and exc.reply.enhanced[0] == "5", exc.reply
            continue
        for key, value in result[1]:
            assert key == key.upper() and key
            if value is not None:
                assert value.isprintable(), (key, value)


@fuzz_settings(1)
@given(st.text([chr(c) for c in range(32, 127)], max_size=60))
def test_xtext_round_trip(value: str) -> None:
    encoded = xtext_encode(value)
    assert set(encoded) <= set(string.printable) - set(string.whitespace)
    assert xtext_decode(encoded) == value
