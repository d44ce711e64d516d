"""The envelope grammar (RFC 5321 §4.1.2, RFC 6531, RFC 3461) as pure functions."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeward.errors import ProtocolError
from edgeward.smtp.parse import (
    ParamPolicy,
    parse_auth,
    parse_bdat,
    parse_mail,
    parse_path,
    parse_rcpt,
    split_command,
    xtext_decode,
    xtext_encode,
)
from edgeward.types import Address

POLICY = ParamPolicy()


def rcpt(path: str, utf8: bool = False) -> Address:
    return parse_path(path, utf8=utf8, sender=False).address


def refused(path: str, utf8: bool = False) -> int:
    with pytest.raises(ProtocolError) as info:
        parse_path(path, utf8=utf8, sender=False)
    return info.value.reply.code


def test_split_command() -> None:
    assert split_command("mail FROM:<a@b.c>  ") == ("MAIL", "FROM:<a@b.c>")
    assert split_command("QUIT") == ("QUIT", "")
    assert split_command("") == ("", "")


@pytest.mark.parametrize(
    ("path", "local", "domain"),
    [
        ("user@example.com", "user", "example.com"),
        ("User.Name+tag@EXAMPLE.com", "User.Name+tag", "example.com"),
        ('"user"@example.com', "user", "example.com"),
        ('"us er"@example.com', '"us er"', "example.com"),
        ('"a\\"b"@example.com', '"a\\"b"', "example.com"),
        ('"a\\bc"@example.com', "abc", "example.com"),
        ('"a@b"@example.com', '"a@b"', "example.com"),
        ('""@example.com', '""', "example.com"),
        ("a%b@[10.0.0.1]", "a%b", "[10.0.0.1]"),
        ("x@[010.000.000.001]", "x", "[10.0.0.1]"),
        ("x@[IPv6:::1]", "x", "[ipv6:::1]"),
        ("x@[ipv6:::ffff:192.0.2.1]", "x", "[ipv6:::ffff:c000:201]"),
        ("@a.example:x@b.example", "x", "b.example"),
        ("@[IPv6:::1],@a.example:x@b.example", "x", "b.example"),
        ("postmaster", "postmaster", ""),
        ("PostMaster", "PostMaster", ""),
        ("a@xn--bcher-kva.example", "a", "xn--bcher-kva.example"),
        ("a@1.example", "a", "1.example"),
        ("a@localhost", "a", "localhost"),
    ],
)
def test_valid_paths(path: str, local: str, domain: str) -> None:
    assert rcpt(path) == Address(local, domain)


@pytest.mark.parametrize(
    "path",
    [
        "user",
        "@a.example:postmaster",
        "user@",
        "@user@example.com",
        "user@@example.com",
        "user@example.com@other.example",
        ".user@example.com",
        "user.@example.com",
        "us..er@example.com",
        "us er@example.com",
        "user@exa mple.com",
        "user@example..com",
        "user@.example.com",
        "user@example.com.",
        "user@-example.com",
        "user@example-.com",
        "user@exa_mple.com",
        "user@192.0.2.1",
        "user@[192.0.2.1",
        "user@[192.0.2]",
        "user@[192.0.2.1.5]",
        "user@[1920.0.2.1]",
        "user@[IPv6:::1%eth0]",
        "user@[IPv6:zz::1]",
        "user@[IPv6:1:2:3:4:5:6:7:8:9]",
        "user@[tag:content]",
        "user@[]",
        '"unterminated@example.com',
        '"a"b@example.com',
        '"a\x01"@example.com',
        '"a\\\x01"@example.com',
        "a\x00@example.com",
        "a\t@example.com",
        "a(comment)@example.com",
        "a<b@example.com",
        "@a.example,x@b.example",
        "@a.example:",
        "@:x@b.example",
        "@a..example:x@b.example",
        "a" * 65 + "@example.com",
        "a@" + "b" * 64 + ".example",
        "a@" + ".".join(["b" * 63] * 4),
    ],
)
def test_invalid_paths(path: str) -> None:
    assert refused(path) == 501


def test_path_limits() -> None:
    domain = ".".join(["b" * 63, "c" * 63, "d" * 61])  # 189 octets
    local = "a" * 64
    fits = f"{local}@{domain}"  # 254 + 2 brackets = 256
    assert len(fits) + 2 == 256
    assert rcpt(fits) == Address(local, domain)
    assert refused(fits + "d") == 501
    assert parse_path("", utf8=False, sender=True).address == Address.null()
    assert refused("") == 501


def test_utf8_needs_smtputf8() -> None:
    assert refused("jörg@example.com") == 553
    assert rcpt("jörg@Bücher.example", utf8=True) == Address("jörg", "bücher.example")
    assert rcpt('"jö rg"@example.com', utf8=True) == Address('"jö rg"', "example.com")
    # Compatibility forms of routing characters are refused.
    for path in (
        "a\uff20evil.test@example.com",
        "a\uff05b@example.com",
        "a@evil\u3002test",
        "a@evil\uff0etest",
    ):
        assert refused(path, utf8=True) == 501, path
    assert refused("a\u00a0b@example.com", utf8=True) == 501


def test_mail_parameters() -> None:
    path, params, size, body, utf8 = parse_mail("FROM:<a@b.example> SIZE=10 BODY=8bitmime SMTPUTF8", POLICY)
    assert path.address == Address("a", "b.example")
    assert params == (("SIZE", "10"), ("BODY", "8BITMIME"), ("SMTPUTF8", None))
    assert (size, body, utf8) == (10, "8BITMIME", True)
    _, params, *_ = parse_mail("FROM:<> RET=full ENVID=a+2Bb+3Dc", POLICY)
    assert params == (("RET", "FULL"), ("ENVID", "a+b=c"))
    assert parse_mail("FROM:   <>", POLICY)[0].address.is_null
    assert parse_mail("FROM:<a@b.example> BODY=BINARYMIME", POLICY)[3] == "BINARYMIME"


@pytest.mark.parametrize(
    ("arg", "code"),
    [
        ("FROM:<a@b.example> SIZE=11", 552),
        ("FROM:<a@b.example> SIZE=1x", 501),
        ("FROM:<a@b.example> SIZE=" + "9" * 5000, 501),
        ("FROM:<a@b.example> ENVID=" + "a" * 101, 501),
        ("FROM:<a@b.example> ENVID=+4", 501),
        ("FROM:<a@b.example> ENVID=+00", 501),
        ("FROM:<a@b.example> AUTH=<>", 555),
        ("FROM:<a@b.example> X-FOO", 555),
        ("FROM:<a@b.example> SIZE=1 size=2", 501),
        ("FROM:<a@b.example> BODY=ü", 501),
        ("FROM:<a@b.example>\tSIZE=1", 501),
        ("FROM:a@b.example", 501),
        ("FROM:<jörg@b.example>", 553),
    ],
)
def test_mail_refusals(arg: str, code: int) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_mail(arg, ParamPolicy(max_size=10))
    assert info.value.reply.code == code


def test_rcpt_parameters() -> None:
    _, params = parse_rcpt("TO:<b@c.example> NOTIFY=failure,delay ORCPT=rfc822;b+40x", POLICY, smtputf8=False)
    assert params == (("NOTIFY", "FAILURE,DELAY"), ("ORCPT", "rfc822;b@x"))
    with pytest.raises(ProtocolError):
        parse_rcpt("TO:<b@c.example> ORCPT=rfc822;" + "a" * 600, POLICY, smtputf8=False)
    with pytest.raises(ProtocolError) as info:
        parse_rcpt("TO:<b@c.example> NOTIFY=NEVER", ParamPolicy(dsn=False), smtputf8=False)
    assert info.value.reply.code == 555


def test_bdat_and_auth_arguments() -> None:
    assert parse_bdat("0 LAST") == (0, True)
    assert parse_bdat("123 last") == (123, True)
    assert parse_bdat("7") == (7, False)
    for bad in ("", "-1", "1 2", "1 LAST x", "1e3", "１２", "9" * 16):
        with pytest.raises(ProtocolError):
            parse_bdat(bad)
    assert parse_auth("plain dGVzdA==") == ("PLAIN", "dGVzdA==")
    assert parse_auth("LOGIN") == ("LOGIN", None)
    assert parse_auth("PLAIN =") == ("PLAIN", "=")
    for bad in ("", "PLAIN a b", "PL@IN", "PLAIN a:b", "X" * 21):
        with pytest.raises(ProtocolError):
            parse_auth(bad)


def test_xtext_round_trip() -> None:
    assert xtext_encode("a+b=c d\u00e9") == "a+2Bb+3Dc+20d+C3+A9"
    assert xtext_decode("a+2Bb+3Dc+20d") == "a+b=c d"


# --- properties ---------------------------------------------------------------------------------

_ADDRESS_ALPHABET = st.sampled_from([*'abAB09.-_@%!"\\[]:,<> \t\x00\x7f+=/é\uff20', "IPv6:", "::1"])


@settings(max_examples=500)
@given(st.lists(_ADDRESS_ALPHABET, max_size=40).map("".join), st.booleans(), st.booleans())
def test_any_path_parses_or_raises_protocol_error(text: str, utf8: bool, sender: bool) -> None:
    """Arbitrary input: a ProtocolError or an address that survives a round trip unchanged."""
    try:
        address = parse_path(text, utf8=utf8, sender=sender).address
    except ProtocolError as exc:
        assert exc.reply.code in (501, 553)
        return
    assert "@" not in address.domain
    assert address.domain == address.domain.lower()
    if address.is_null or not address.domain:
        return
    # str(address) is unambiguous: parsing it again gives the same address.
    assert parse_path(str(address), utf8=utf8, sender=sender).address == address


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_mail_and_rcpt_never_raise_anything_else(text: str) -> None:
    for call in (
        lambda: parse_mail(text, POLICY),
        lambda: parse_rcpt(text, POLICY, smtputf8=True),
        lambda: parse_rcpt("TO:<" + text, POLICY, smtputf8=False),
    ):
        with contextlib.suppress(ProtocolError):
            call()
