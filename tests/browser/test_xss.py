"""Hostile mail rendered in Chromium: no script runs, whatever page shows it.

One message carries a payload in each place a sender controls and the console shows: the
Subject (``<script>``, and bidi overrides encoded per RFC 2047), the From display name
(``<img onerror>``, ``javascript:``), the attachment's file name (``<svg onload>``, a right-to-
left override) and the Message-ID (``<svg/onload>``, ``javascript:``). Every payload would set
``window.__pwned``, call ``alert`` and ``console.log``; each page that shows the message
(quarantine list and show, tracking and why, the digest's release link) is opened and
``Watched`` checks that none of it happened, that no element or attribute from mail came
alive and that Chromium reported no CSP violation. The payload text must be on the page as
text, so a page that dropped it would not pass for a safe one.

The first tests prove the checks can fail: the same markup served without the console's
policy runs (marker, dialog, console), and under the policy Chromium reports the refusal.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest
from playwright.sync_api import Route

from edgeward.web.security import CSP
from tests.browser.driver import Watched
from tests.browser.stack import ADMIN, PASSWORD, Stack
from tests.e2e.test_quarantine_manager import SPAM

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
OpenPage = Callable[[str], Watched]

SCRIPT = "<script>window.__pwned='subject';console.log('pwned');alert('subject')</script>"
IMG = "<img src=x onerror=window.__pwned='from';alert('from')>"
SVG = "<svg onload=window.__pwned='file';alert('file')>"
MID_SVG = "<svg/onload=window.__pwned='mid';alert('mid')>"
JS = "javascript:alert('js')"
RLO, LRI = "\u202e", "\u2066"
BIDI_SHOWN = "\\u202egnp.exe \\u2066bidi"  # how the pages show the subject's overrides
MESSAGE_ID = f"<{JS}{MID_SVG}@hostile.test>"
RCPT = "grace@example.test"
PROBE = "/__probe"  # answered by the browser's route, never by the console


def hostile() -> bytes:
    html = SPAM.partition(b"\r\n\r\n")[2].decode("latin-1")
    msg = MIMEMultipart("mixed")
    msg["From"] = f'"{IMG} {JS}" <evil@hostile.test>'
    msg["To"] = RCPT
    # The bidi part encoded, as a sender of non-ASCII would: every page shows it decoded.
    msg["Subject"] = f"FREE MONEY {SCRIPT} " + _b_word(f"{RLO}gnp.exe {LRI}bidi")
    msg["Message-ID"] = MESSAGE_ID
    msg.attach(MIMEText(html, "html", "iso-8859-1"))
    part = MIMEApplication(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "pdf")
    part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", f"{SVG}{RLO}fdp.pdf"))
    msg.attach(part)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _b_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def _probe(page: Watched, headers: dict[str, str]) -> None:
    body = f"<!doctype html><p>{SCRIPT}</p><p>{IMG}</p><p>{SVG}</p>"

    def answer(route: Route) -> None:
        route.fulfill(status=200, body=body, headers={"content-type": "text/html", **headers})

    page.page.route(f"**{PROBE}", answer)
    page.page.goto(PROBE)
    page.page.wait_for_timeout(300)  # the <img> error fires once its load fails


def test_the_checks_see_script_that_runs(stack: Stack, open_page: OpenPage) -> None:
    page = open_page("no-policy")
    _probe(page, {})
    traces = page.script_traces()
    assert traces["pwned"] in ("subject", "from", "file")
    assert traces["dialogs"] and any("pwned" in m for m in traces["console"])
    with pytest.raises(AssertionError, match="script traces"):
        page.assert_no_script()


def test_the_checks_see_what_the_policy_refuses(stack: Stack, open_page: OpenPage) -> None:
    page = open_page("policy")
    _probe(page, {"content-security-policy": CSP})
    traces = page.script_traces()
    assert traces["pwned"] is None and not traces["dialogs"]  # the policy held
    assert page.csp_violations(), traces["console"]  # and Chromium said so
    with pytest.raises(AssertionError, match="CSP reports"):
        page.assert_no_script()


@pytest.fixture(scope="module")
def held_hostile(stack: Stack) -> Stack:
    stack.send(hostile(), [RCPT], sender="evil@hostile.test")
    return stack


def _shows_payloads_as_text(page: Watched, *payloads: str) -> None:
    text = page.page.inner_text("main")
    for payload in payloads:
        assert payload in text, (payload, text)
    assert RLO not in text and LRI not in text  # shown as \u202e, never acting on the text
    assert "=?utf-8?" not in text  # the subject decoded before it is escaped


def test_quarantine_pages_show_hostile_mail_as_text(held_hostile: Stack, open_page: OpenPage) -> None:
    page = open_page("admin")
    page.login(ADMIN, PASSWORD)
    page.visit("/quarantine?sender=evil%40hostile.test", shot="list")
    _shows_payloads_as_text(page, SCRIPT, BIDI_SHOWN)
    [link] = page.page.locator("a[href^='/quarantine/']").all()
    qid = (link.get_attribute("href") or "").rsplit("/", 1)[1]
    page.visit(f"/quarantine/{qid}", shot="show")
    _shows_payloads_as_text(page, SCRIPT, BIDI_SHOWN, IMG, JS, MID_SVG, SVG, "\\u202efdp.pdf")
    assert page.page.locator("td.filename").inner_text().startswith(SVG)


def test_tracking_pages_show_hostile_mail_as_text(held_hostile: Stack, open_page: OpenPage) -> None:
    page = open_page("admin")
    page.login(ADMIN, PASSWORD)
    page.visit("/tracking?sender=evil%40hostile.test", shot="search")
    assert "QUARANTINE" in page.page.inner_text("main table")
    page.visit(f"/tracking?message_id={MESSAGE_ID}", shot="by-message-id")
    # The search form echoes it back inside value="...", which it must not break out of.
    assert page.page.get_by_label("Message-ID").input_value() == MESSAGE_ID
    assert "QUARANTINE" in page.page.inner_text("main table")
    href = page.page.locator("a[href^='/tracking/why/']").first.get_attribute("href")
    page.visit(href or "", shot="why")
    assert "evil@hostile.test" in page.page.inner_text("main")


@pytest.fixture(scope="module")
def hostile_digest(held_hostile: Stack) -> EmailMessage:
    held_hostile.cli("quarantine", "digest", "--send")

    def digest(m: EmailMessage) -> bool:
        return str(m["Subject"]).startswith("Quarantine digest") and str(m["To"]) == RCPT

    return held_hostile.arrived(digest)


def test_the_release_link_page_shows_hostile_mail_as_text(
    hostile_digest: EmailMessage, open_page: OpenPage
) -> None:
    plain = hostile_digest.get_body(("plain",))
    assert plain is not None
    [link] = re.findall(r"Release: (\S+)", plain.get_content())
    page = open_page("recipient")
    page.visit(link, shot="link")
    _shows_payloads_as_text(page, SCRIPT, BIDI_SHOWN)


def test_the_digest_itself_runs_no_script_in_a_mail_reader(
    hostile_digest: EmailMessage, open_page: OpenPage
) -> None:
    """The digest's HTML as a mail reader shows it: no console around it, so no CSP either;
    only its own escaping stands between the sender's subject and the recipient's reader."""
    html = hostile_digest.get_body(("html",))
    assert html is not None
    page = open_page("digest")
    page.page.set_content(html.get_content(), wait_until="load")
    page.page.wait_for_timeout(300)  # an <img onerror> would have fired by now
    page.settled(shot="digest-html")
    assert SCRIPT in page.page.inner_text("body")
