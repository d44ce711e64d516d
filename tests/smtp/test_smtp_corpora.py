"""The shared corpora: SMTP smuggling end-of-data sequences and open-relay address forms.

Read from ``<repo>/../shared/corpora/smtp/``; skipped with a reason when that folder is absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeward.errors import ProtocolError
from edgeward.smtp import MessageData, ProtocolLimits, Quit, ServerConnection
from edgeward.smtp.parse import ParamPolicy, parse_mail, parse_rcpt
from edgeward.types import Address, Reply
from tests.smtp.smtp_transcript import DEFAULT_EXTENSIONS, Driver

CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "smtp"


def _load(name: str) -> Any:
    path = CORPORA / name
    if not path.is_file():
        pytest.skip(f"shared corpus {path} is not present on this machine")
    return json.loads(path.read_text("utf-8"))


def _sequences() -> list[bytes]:
    path = CORPORA / "smtp-smuggling-eod-sequences.json"
    if not path.is_file():
        return []
    return [bytes.fromhex(s["hex"]) for s in json.loads(path.read_text("utf-8"))["sequences"]]


SEQUENCES = _sequences()
PREAMBLE = b"EHLO client.example\r\nMAIL FROM:<a@client.example>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
SMUGGLED = (
    b"MAIL FROM:<admin@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
    b"From: admin@example.net\r\n\r\nsmuggled\r\n"
)


def _body(seq: bytes) -> bytes:
    return b"Subject: first\r\n\r\nbefore" + seq + SMUGGLED + b".\r\nQUIT\r\n"


def _run(policy: str, stream: bytes, split: int | None) -> Driver:
    conn = ServerConnection(ProtocolLimits(bare_lf=policy), DEFAULT_EXTENSIONS)  # type: ignore[arg-type]
    driver = Driver(conn)
    driver.write(PREAMBLE)
    if split is None:
        driver.write(stream)
    else:
        driver.write(stream[:split])
        driver.write(stream[split:])
    return driver


def test_corpus_is_complete() -> None:
    data = _load("smtp-smuggling-eod-sequences.json")
    assert bytes.fromhex(data["rfc_compliant_end_of_data"]["hex"]) == b"\r\n.\r\n"
    assert len(data["sequences"]) >= 12


@pytest.mark.parametrize("policy", ["reject", "normalize"])
@pytest.mark.parametrize("seq", SEQUENCES, ids=repr)
def test_fake_terminator_never_ends_data(seq: bytes, policy: str) -> None:
    """At every split point: one message, ended by the real CRLF.CRLF, never two."""
    stream = _body(seq)
    for split in [None, *range(1, len(stream))]:
        driver = _run(policy, stream, split)
        messages = [e for e in driver.events if isinstance(e, MessageData)]
        assert len(messages) == 1, (split, driver.events)
        assert isinstance(driver.events[-1], Quit), split
        # No command of the smuggled transaction reached the session as a command.
        assert len(driver.events) == 6, (split, driver.events)
        message = messages[0]
        if policy == "reject" or b"\x00" in seq:
            assert message.violation is not None and message.violation.code == 550
            assert message.data == b""
        else:
            assert message.violation is None
            assert b"smuggled" in message.data and message.data.startswith(b"Subject: first")
            assert message.data.count(b"\n") == message.data.count(b"\r\n") == message.data.count(b"\r")


# --- open relay forms ---------------------------------------------------------------------------

PLACEHOLDERS = {
    "from": "antispam",
    "to": "relaytest",
    "domain": "evil.test",
    "ip": "192.0.2.25",
    "srvname": "mx.example.net",
}

# rcpt template -> (local part, routing domain) or None for "refused with 501 5.1.3".
EXPECTED_RCPT: dict[str, tuple[str, str] | None] = {
    "{to}@{domain}": ("relaytest", "evil.test"),
    "{to}%{domain}@[{ip}]": ("relaytest%evil.test", "[192.0.2.25]"),
    "{to}%{domain}@{srvname}": ("relaytest%evil.test", "mx.example.net"),
    '"{to}@{domain}"': None,
    '"{to}%{domain}"': None,
    "{to}@{domain}@[{ip}]": None,
    '"{to}@{domain}"@[{ip}]': ('"relaytest@evil.test"', "[192.0.2.25]"),
    "{to}@{domain}@{srvname}": None,
    "@[{ip}]:{to}@{domain}": ("relaytest", "evil.test"),
    "@{srvname}:{to}@{domain}": ("relaytest", "evil.test"),
    "{domain}!{to}": None,
    "{domain}!{to}@[{ip}]": ("evil.test!relaytest", "[192.0.2.25]"),
    "{domain}!{to}@{srvname}": ("evil.test!relaytest", "mx.example.net"),
}
EXPECTED_MAIL = {
    "": Address.null(),
    "{from}@{domain}": Address("antispam", "evil.test"),
    "{from}@{srvname}": Address("antispam", "mx.example.net"),
    "{from}@[{ip}]": Address("antispam", "[192.0.2.25]"),
}


def test_open_relay_forms_parse_to_their_routing_domain() -> None:
    data = _load("open-relay-address-forms.json")
    policy = ParamPolicy()
    for case in data["tests"]:
        assert case["rcpt_to"] in EXPECTED_RCPT, f"new form in the corpus: {case['rcpt_to']!r}"
        assert case["mail_from"] in EXPECTED_MAIL, f"new form in the corpus: {case['mail_from']!r}"
        sender = case["mail_from"].format(**PLACEHOLDERS)
        path = parse_mail(f"FROM:<{sender}>", policy)[0]
        assert path.address == EXPECTED_MAIL[case["mail_from"]]
        rcpt = case["rcpt_to"].format(**PLACEHOLDERS)
        expected = EXPECTED_RCPT[case["rcpt_to"]]
        if expected is None:
            with pytest.raises(ProtocolError) as info:
                parse_rcpt(f"TO:<{rcpt}>", policy, smtputf8=False)
            assert info.value.reply == Reply(501, "5.1.3", "Bad recipient address syntax"), rcpt
            continue
        address = parse_rcpt(f"TO:<{rcpt}>", policy, smtputf8=False)[0].address
        assert (address.local, address.domain) == expected, rcpt
        # The one place a foreign domain may appear is the domain itself: never hidden in a
        # way that would let a check on address.domain be fooled.
        if address.domain != "evil.test":
            assert "@" not in address.local or address.local.startswith('"'), rcpt


def test_open_relay_forms_through_the_connection() -> None:
    """The same forms over the wire: refused forms give 501 5.1.3, never a RcptTo event."""
    data = _load("open-relay-address-forms.json")
    conn = ServerConnection(ProtocolLimits(max_protocol_errors=100), DEFAULT_EXTENSIONS)
    driver = Driver(conn)
    driver.write(b"EHLO client.example\r\nMAIL FROM:<antispam@[192.0.2.25]>\r\n")
    for case in data["tests"]:
        rcpt = case["rcpt_to"].format(**PLACEHOLDERS)
        out = driver.write(f"RCPT TO:<{rcpt}>\r\n".encode())
        expected = EXPECTED_RCPT[case["rcpt_to"]]
        if expected is None:
            assert out == b"501 5.1.3 Bad recipient address syntax\r\n", rcpt
        else:
            assert out.startswith(b"250 2.1.5 Recipient <"), rcpt
            assert f"@{expected[1]}>".encode() in out, rcpt
