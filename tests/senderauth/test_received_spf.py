"""The Received-SPF field: RFC 7208 §9.1 shape, and nothing from the envelope can break a line."""

from __future__ import annotations

from email.parser import HeaderParser

from edgeward.senderauth.received_spf import received_spf, received_spf_value
from edgeward.senderauth.spf import SpfIdentity, SpfResult, SpfStatus


def result(**kw: object) -> SpfResult:
    fields: dict[str, object] = {
        "status": SpfStatus.PASS,
        "identity": SpfIdentity.MAILFROM,
        "domain": "example.org",
        "ip": "192.0.2.10",
        "sender": "alice@example.org",
        "helo": "mx.example.org",
        "mechanism": "ip4:192.0.2.0/24",
    }
    fields.update(kw)
    return SpfResult(**fields)  # type: ignore[arg-type]


def parsed(field: str) -> str:
    message = HeaderParser().parsestr(field.replace("\r\n", "\n") + "\n")
    assert list(message.keys()) == ["Received-SPF"]
    return " ".join(str(message["Received-SPF"]).split())


def test_pass_field_has_result_comment_and_pairs() -> None:
    field = received_spf(result(), receiver="gw.example.net")
    assert " ".join(field.split()).startswith(
        "Received-SPF: pass (gw.example.net: example.org designates 192.0.2.10 as permitted sender)"
    )
    assert field.endswith("\r\n") and field.count("\r\n") == field.count("\r\n\t") + 1
    assert parsed(field).endswith(
        'client-ip=192.0.2.10; envelope-from="alice@example.org"; helo=mx.example.org;'
        ' receiver=gw.example.net; identity=mailfrom; mechanism="ip4:192.0.2.0/24"'
    )
    assert all(len(line) <= 78 for line in field.split("\r\n"))


def test_helo_identity_and_errors_carry_problem() -> None:
    value = received_spf_value(
        result(status=SpfStatus.PERMERROR, identity=SpfIdentity.HELO, sender="", mechanism=None,
               problem='Void lookup limit of 2 exceeded "x"'),
        receiver="gw.example.net",
    )  # fmt: skip
    flat = " ".join(value.split())
    assert flat.startswith("permerror (")
    assert "envelope-from" not in flat and "identity=helo" in flat
    assert 'problem="Void lookup limit of 2 exceeded \\"x\\""' in flat


def test_crlf_and_controls_from_the_envelope_never_reach_the_field() -> None:
    evil = "a@example.org\r\nBcc: victim@example.com\n\x00"
    field = received_spf(
        result(
            status=SpfStatus.FAIL, sender=evil, helo="x\r\nX-Injected: 1", explanation="see (me)\r\nFoo: bar"
        ),
        receiver="gw.example.net",
    )
    body = field.removesuffix("\r\n")
    assert "\n" not in body.replace("\r\n\t", "") and "\r" not in body.replace("\r\n\t", "")
    assert "\x00" not in field
    assert "Bcc: victim" in field  # kept as text inside a quoted-string, on no line of its own
    assert not any(line.startswith(("Bcc", "X-Injected", "Foo")) for line in field.split("\r\n"))
    assert "sender; see \\(me\\)??Foo: bar)" in " ".join(field.split())
    parsed(field)


def test_long_values_are_bounded() -> None:
    field = received_spf(result(sender="a" * 5000 + "@example.org"), receiver="gw.example.net")
    assert len(field) < 1500
    assert all(len(line) <= 998 for line in field.split("\r\n"))
