"""DKIM signing of outbound mail, checked with dkimpy's verifier against the published record.

The signature is made after the rules' changes; the last test runs the transform chain the
gateway builds (stamps, rules with a disclaimer and a subject tag, the signature) over a
message an internal server had signed, whose signature the disclaimer breaks.
"""

from __future__ import annotations

import dkim
import pytest

from edgeward.config.dkim_sign import DkimSignConfig
from edgeward.config.rules import TransportRule
from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.filters.base import SessionInfo
from edgeward.filters.transforms import Transforms
from edgeward.filters.transforms.base import Accepted
from edgeward.filters.transforms.dkimsign import DkimSign, from_domain
from edgeward.filters.transforms.rules import RuleChanges
from edgeward.filters.verdict import Verdict
from edgeward.senderauth.dkimsign import generate_key, strip_signatures, txt_record
from edgeward.types import Action, Address, Finding, Peer

KEY = generate_key(1024)
OTHER = generate_key(1024)
RECORDS = {
    b"s1._domainkey.example.test.": "".join(txt_record(KEY)).encode(),
    b"int._domainkey.example.test.": "".join(txt_record(OTHER)).encode(),
    b"ext._domainkey.partner.test.": "".join(txt_record(OTHER)).encode(),
}
CFG = DkimSignConfig(enabled=True, selector="s1", domains=("example.test",))
MESSAGE = (
    b"From: Alice <alice@sales.example.test>\r\nTo: bob@remote.test\r\nSubject: offer\r\n"
    b"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.test>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello Bob,\r\nthe offer stands.\r\n"
)
RELAY = ReceiveConnectorConfig(name="relay")
OUT = SessionInfo("s1", Peer("10.0.0.5", 1234), RELAY, rights=frozenset({"relay"}))
IN = SessionInfo("s2", Peer("192.0.2.1", 1234), ReceiveConnectorConfig(name="internet"))


def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
    return RECORDS.get(name, b"")


def verify(data: bytes) -> list[tuple[bytes, bool]]:
    """(d=, verified) for every signature on the message, top first."""
    out = []
    for index in range(
        data.lower().count(b"\ndkim-signature:") + data.lower().startswith(b"dkim-signature:")
    ):
        verifier = dkim.DKIM(data)
        try:
            ok = bool(verifier.verify(idx=index, dnsfunc=dnsfunc))
        except dkim.ValidationError:  # a body hash mismatch is raised, not returned
            ok = False
        out.append((verifier.domain, ok))
    return out


def accepted(
    info: SessionInfo = OUT, findings: tuple[Finding, ...] = (), action: Action = Action.CONTINUE
) -> Accepted:
    verdict = Verdict(action, None, findings, (), 0.0, "test")
    return Accepted("01ID", info, "mx.example.test", (Address("bob", "remote.test"),), verdict)


def test_outbound_mail_of_our_domain_verifies_against_the_record() -> None:
    signed = DkimSign(CFG, KEY).apply(MESSAGE, accepted())
    assert signed.startswith(b"DKIM-Signature:") and signed.endswith(MESSAGE)
    assert verify(signed) == [(b"example.test", True)]
    assert b"c=relaxed/relaxed" in signed and b"d=example.test" in signed and b"s=s1" in signed


def test_inbound_foreign_and_refused_mail_is_not_signed() -> None:
    sign = DkimSign(CFG, KEY)
    assert sign.apply(MESSAGE, accepted(IN)) == MESSAGE
    foreign = MESSAGE.replace(b"sales.example.test", b"example.org")
    assert sign.apply(foreign, accepted()) == foreign
    assert sign.apply(MESSAGE, accepted(action=Action.REJECT)) == MESSAGE
    two_froms = b"From: a@example.test\r\n" + MESSAGE
    assert sign.apply(two_froms, accepted()) == two_froms


def test_the_longest_configured_domain_signs() -> None:
    cfg = DkimSignConfig(enabled=True, selector="s1", domains=("example.test", "sales.example.test"))
    assert cfg.signing_domain("sales.example.test") == "sales.example.test"
    assert cfg.signing_domain("eu.sales.example.test") == "sales.example.test"
    assert cfg.signing_domain("example.test") == "example.test"
    assert cfg.signing_domain("badexample.test") is None
    assert from_domain(MESSAGE) == "sales.example.test"


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="selector and at least one domain"):
        DkimSignConfig(enabled=True, domains=("example.test",))
    with pytest.raises(ValueError, match="must cover From"):
        DkimSignConfig(headers=("subject",))
    with pytest.raises(ValueError, match="header field name"):
        DkimSignConfig(headers=("from", "to\r\nbcc"))
    with pytest.raises(ValueError, match="domain name"):
        DkimSignConfig(domains=("exa mple.test",))


def test_only_signatures_of_the_signing_domain_are_removed() -> None:
    internal = dkim.sign(MESSAGE, b"int", b"example.test", OTHER, canonicalize=(b"relaxed", b"relaxed"))
    partner = dkim.sign(MESSAGE, b"ext", b"partner.test", OTHER)
    data = partner + internal + MESSAGE
    assert strip_signatures(data, "example.test") == partner + MESSAGE
    assert strip_signatures(data, "other.test") == data


def test_the_signature_is_made_after_the_disclaimer_and_replaces_the_broken_one() -> None:
    rule = TransportRule.model_validate({
        "name": "disclaimer", "conditions": {"direction": "outbound"},
        "actions": {"disclaimer": {"text": "Confidential."}, "prepend_subject": "[EXT]",
                    "add_headers": {"X-Policy": "outbound"}},
    })  # fmt: skip
    internal = dkim.sign(MESSAGE, b"int", b"example.test", OTHER, canonicalize=(b"relaxed", b"relaxed"))
    partner = dkim.sign(MESSAGE, b"ext", b"partner.test", OTHER)
    received = partner + internal + MESSAGE
    assert verify(received) == [(b"partner.test", True), (b"example.test", True)]
    chain = Transforms([RuleChanges([rule]), DkimSign(CFG, KEY)])
    out = chain.accepted(
        received, accepted(findings=(Finding("RULE_MATCH", "transport-rules", "disclaimer"),))
    )
    assert b"Confidential." in out and b"Subject: [EXT] offer" in out
    # Ours verifies over the changed message; the internal one of our domain is gone; the
    # partner's, which the disclaimer broke, is left as it was.
    assert verify(out) == [(b"example.test", True), (b"partner.test", False)]
    assert b"s=int" not in out
