"""Look-alikes of the site's own accepted domains: the rules, and real messages through the
shipped classifier and the content filter agent."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

import pytest

from edgeward.config.schema import ContentFilterConfig, ReceiveConnectorConfig
from edgeward.content.classifier import SpamClassifier
from edgeward.content.lookalike import OwnDomains, skeleton
from edgeward.filters.agents.content import ContentFilter
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.message import MessageView
from edgeward.headers import parse_headers
from edgeward.types import Peer

ACCEPTED = ("example.com", "*.contoso-bank.co.uk")
OWN = OwnDomains(ACCEPTED)


@pytest.mark.parametrize(
    ("host", "trick"),
    [
        ("examp1e.com", "homoglyph"),  # digit for a letter
        ("exarnple.com", "homoglyph"),  # rn for m
        ("ex\u0430mple.com", "homoglyph"),  # Cyrillic a
        ("xn--exmple-cua.com", "homoglyph"),  # punycode of exämple
        ("exmaple.com", "typo"),  # two neighbours swapped
        ("examples.com", "typo"),
        ("example.co", "suffix"),
        ("example-login.com", "hyphen"),
        ("secure-example.com", "hyphen"),
        ("example.com.account-check.net", "subdomain"),
        ("login.example.com-secure.net", "subdomain"),
        ("contosobank.co.uk", "typo"),
    ],
)
def test_tricks_are_recognised(host: str, trick: str) -> None:
    hit = OWN.lookalike(host)
    assert hit is not None and hit.trick == trick, host


@pytest.mark.parametrize(
    "host",
    [
        "example.com", "mail.example.com", "EXAMPLE.COM.", "online.contoso-bank.co.uk",
        "example.net",  # a sister domain: left to the sender-authentication checks
        "myexample.com", "unrelated.org", "192.0.2.1", "[2001:db8::1]", "localhost",
    ],
)  # fmt: skip
def test_own_domains_and_unrelated_names_are_not_lookalikes(host: str) -> None:
    assert OWN.lookalike(host) is None


def test_skeleton_reads_confusables_as_ascii() -> None:
    assert skeleton("\u0440\u0430\u0443\u0440\u0430l") == "paypal"  # Cyrillic р а у
    assert skeleton("ｅｘａｍｐｌｅ") == "example"  # full width, by NFKC
    assert not OwnDomains(["*", "ab.com"])  # too short to imitate, and the wildcard names nothing


def _message(from_addr: str, link: str, reply_to: str | None = None) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = from_addr
    msg["To"] = "alice@example.com"
    msg["Subject"] = "Invoice 2291 for your approval"
    msg["Date"] = "Wed, 02 Dec 2026 08:00:00 +0000"
    msg["Message-ID"] = "<2291@mailer.test>"
    if reply_to:
        msg["Reply-To"] = reply_to
    msg.set_content(f"Hello Alice,\n\nplease approve the attached invoice today: {link}\n\nThanks, Bob\n")
    msg.add_alternative(f'<p>Hello Alice,</p><p>please approve the <a href="{link}">invoice</a> today.</p>',
                        subtype="html")  # fmt: skip
    return msg.as_bytes()


def test_the_classifier_reports_lookalike_links_from_and_reply_to() -> None:
    classifier = SpamClassifier.load(learning=False, own_domains=ACCEPTED)
    raw = _message(
        "Bob Finance <bob@examp1e.com>", "https://example.com.invoice-view.net/a/2291",
        reply_to="Bob <bob@exmaple.com>",
    )  # fmt: skip
    verdict = classifier.score(raw)
    where = {(hit.where, hit.host, hit.trick) for hit in verdict.lookalikes}
    assert where == {
        ("from", "examp1e.com", "homoglyph"),
        ("reply-to", "exmaple.com", "typo"),
        ("link", "example.com.invoice-view.net", "subdomain"),
    }
    assert "PHISH_LOOKALIKE_OWN_DOMAIN" in dict(verdict.findings)
    # The cue is not a model feature (no training message knew the site's domains): the spam
    # probability is the same as without accepted domains.
    plain = SpamClassifier.load(learning=False).score(raw)
    assert plain.lookalikes == () and plain.probability == verdict.probability
    assert verdict.pcl > plain.pcl


def test_mail_from_and_to_the_own_domain_is_not_reported() -> None:
    classifier = SpamClassifier.load(learning=False, own_domains=ACCEPTED)
    verdict = classifier.score(_message("Bob <bob@example.com>", "https://intranet.example.com/i/2291"))
    assert verdict.lookalikes == ()
    assert "PHISH_LOOKALIKE_OWN_DOMAIN" not in dict(verdict.findings)


async def test_the_content_filter_adds_the_finding_the_score_table_weighs() -> None:
    agent = ContentFilter(SpamClassifier.load(learning=False, own_domains=ACCEPTED), ContentFilterConfig())
    raw = _message("Bob <bob@secure-example.com>", "https://secure-example.com/pay")  # CRLF already
    headers = parse_headers(raw)
    info = SessionInfo("s1", Peer("192.0.2.1", 1), ReceiveConnectorConfig(name="in"))
    ctx = StageContext(Stage.EOD, info, data=raw, headers=headers, message=MessageView(raw, headers))
    outcome = await agent.check(Stage.EOD, ctx)
    found = {f.name: f.detail for f in outcome.findings}
    assert found["LOOKALIKE_OWN_DOMAIN"].startswith("from secure-example.com imitates example.com (hyphen)")
    assert any(name.startswith("SCL_") for name in found)
