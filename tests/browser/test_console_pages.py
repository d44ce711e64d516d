"""The console in Chromium over HTTPS, against a running gateway and a real downstream: log in
through the form, search tracking and open a "why", release held spam from the quarantine page
and see it delivered, follow a digest's release link twice, use the served API by token.
Every page is screenshotted."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from email.message import EmailMessage

import pytest

from tests.browser.driver import Watched
from tests.browser.stack import ADMIN, HOSTNAME, PASSWORD, READER, Stack
from tests.e2e.test_quarantine_manager import SPAM
from tests.e2e.test_web_console import Browser as Client

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
OpenPage = Callable[[str], Watched]
SNI = {"sni_hostname": HOSTNAME}  # the name the console's certificate is checked against


def spam(tag: str) -> bytes:
    """The spam sample with a Message-ID and a subject of its own, so a test finds its copy."""
    head, _, body = SPAM.partition(b"\r\n\r\n")
    head = re.sub(rb"^Subject: [^\r\n]*", f"Subject: FREE MONEY {tag}".encode(), head, flags=re.M)
    return head + f"\r\nMessage-ID: <{tag}@cheap-offers.biz>".encode() + b"\r\n\r\n" + body


def body_digest(data: bytes) -> str:
    body = data.replace(b"\r\n", b"\n").partition(b"\n\n")[2]
    return hashlib.sha256(body.rstrip(b"\n")).hexdigest()


def held(page: Watched, tag: str) -> str:
    """Search the quarantine page for ``tag`` and open the one entry found; its qid."""
    page.visit("/quarantine")
    page.page.get_by_label("Subject").fill(tag)
    with page.page.expect_navigation():
        page.page.get_by_role("button", name="Search").click()
    page.settled(shot="quarantine-search")
    links = page.page.locator("a[href^='/quarantine/']")
    assert links.count() == 1, page.page.content()
    with page.page.expect_navigation():
        links.first.click()
    page.settled(shot="quarantine-show")
    return page.page.url.rsplit("/", 1)[1]


def test_login_through_the_form_then_every_page(stack: Stack, open_page: OpenPage) -> None:
    anonymous = open_page("anonymous")
    anonymous.visit("/quarantine", shot="redirected")  # to the login form
    assert anonymous.page.url.endswith("/login")
    wrong = open_page("wrong")
    wrong.visit("/login")
    wrong.page.get_by_label("Name").fill(READER)
    wrong.page.get_by_label("Password").fill("not the password")
    with wrong.page.expect_navigation():
        wrong.page.get_by_role("button", name="Log in").click()
    wrong.settled(shot="refused")
    assert "wrong name or password" in wrong.page.inner_text("main")

    reader = open_page("reader")
    reader.login(READER, PASSWORD)
    assert f"{READER} (readonly)" in reader.page.inner_text("header")
    for path in ("/quarantine", "/queue", "/tracking"):
        reader.visit(path, shot=path.strip("/"))
    with reader.page.expect_navigation():
        reader.page.get_by_role("button", name="Log out").click()
    reader.settled(shot="logged-out")
    assert reader.page.url.endswith("/login")
    reader.visit("/queue")
    assert reader.page.url.endswith("/login")  # the session is gone


def test_tracking_search_and_why(stack: Stack, open_page: OpenPage) -> None:
    stack.send(spam("tracked-1"), ["carol@example.test"])
    page = open_page("admin")
    page.login(ADMIN, PASSWORD)
    page.visit("/tracking")
    page.page.get_by_label("Message-ID").fill("<tracked-1@cheap-offers.biz>")
    with page.page.expect_navigation():
        page.page.get_by_role("button", name="Search").click()
    page.settled(shot="tracking-search")
    table = page.page.inner_text("main table")
    assert "QUARANTINE" in table and "carol@example.test" in table, table
    with page.page.expect_navigation():
        page.page.locator("a[href^='/tracking/why/']").first.click()
    page.settled(shot="why")
    why = page.page.inner_text("main")
    assert "quarantine" in why.lower() and "SCL" in why, why


def test_release_through_the_page_reaches_the_downstream(stack: Stack, open_page: OpenPage) -> None:
    data = spam("release-1")
    stack.send(data, ["dave@example.test", "erin@example.test"])
    reader = open_page("reader")
    reader.login(READER, PASSWORD)
    held(reader, "release-1")
    assert reader.page.locator("form.release").count() == 0  # a read-only account sees no buttons

    page = open_page("admin")
    page.login(ADMIN, PASSWORD)
    qid = held(page, "release-1")
    page.page.get_by_label("dave@example.test").uncheck()
    with page.page.expect_navigation():
        page.page.get_by_role("button", name="Release to the recipients ticked").click()
    page.settled(shot="released")
    text = page.page.inner_text("main")
    assert "Released" in text and "still held for dave@example.test" in text, text

    def ours(m: EmailMessage) -> bool:
        return str(m["Message-ID"]) == "<release-1@cheap-offers.biz>"

    delivered = stack.arrived(ours)
    assert str(delivered["X-Rcpt-Args"]) == "<erin@example.test>"  # smtp-sink's record of RCPT TO
    assert body_digest(delivered.as_bytes()) == body_digest(data)
    page.visit(f"/quarantine/{qid}", shot="still-held")
    assert "dave@example.test" in page.page.inner_text("main")


def test_a_digest_link_works_once_in_the_browser(stack: Stack, open_page: OpenPage) -> None:
    data = spam("digest-1")
    stack.send(data, ["frank@example.test"])
    stack.cli("quarantine", "digest", "--send")

    def frank_digest(m: EmailMessage) -> bool:
        return str(m["Subject"]).startswith("Quarantine digest") and str(m["To"]) == "frank@example.test"

    digest = stack.arrived(frank_digest)
    plain = digest.get_body(("plain",))
    assert plain is not None
    [link] = re.findall(r"Release: (\S+)", plain.get_content())
    assert link.startswith(stack.origin), link

    page = open_page("recipient")  # no login: the link is the authority
    page.visit(link, shot="link")
    assert "FREE MONEY digest-1" in page.page.inner_text("main")
    stale = open_page("stale")  # the same link open in another tab, its button still there
    stale.visit(link)
    with page.page.expect_navigation():
        page.page.get_by_role("button", name="Release it to me").click()
    page.settled(shot="link-used")
    assert "released to frank@example.test" in page.page.inner_text("main")

    def ours(m: EmailMessage) -> bool:
        return str(m["Message-ID"]) == "<digest-1@cheap-offers.biz>"

    assert body_digest(stack.arrived(ours).as_bytes()) == body_digest(data)
    again = open_page("again")
    again.visit(link, status=410, shot="link-again")
    assert "cannot be used" in again.page.inner_text("main")
    with stale.page.expect_navigation() as used_twice:
        stale.page.get_by_role("button", name="Release it to me").click()
    assert used_twice.value is not None and used_twice.value.status == 410
    stale.settled(shot="link-posted-twice")
    assert "cannot be used: the release link has already been used" in stale.page.inner_text("main")


def test_the_served_api_by_token_then_the_page_that_follows(stack: Stack, open_page: OpenPage) -> None:
    """The API of the running console (httpx trusting its certificate, as scripts would): a
    read-only token finds but may not delete, no token is 401, an admin token deletes; the
    page in the browser then says the message is gone."""
    stack.send(spam("api-1"), ["heidi@example.test"])
    reader = {"Authorization": f"Bearer {stack.reader_token}"}
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    with Client(stack.web_port, stack.cert) as api:
        found = api.get("/api/v1/quarantine", params={"subject": "api-1"}, headers=reader)
        assert found.status_code == 200 and found.headers["content-security-policy"].startswith("default-src")
        [entry] = found.json()["entries"]
        assert entry["recipients"] == ["heidi@example.test"]
        qid = entry["qid"]
        assert (
            api.client.delete(f"/api/v1/quarantine/{qid}", headers=reader, extensions=SNI).status_code == 403
        )
        assert api.get("/api/v1/quarantine").status_code == 401
        gone = api.client.delete(f"/api/v1/quarantine/{qid}", headers=admin, extensions=SNI)
        assert gone.json() == {"deleted": qid}
    page = open_page("admin")
    page.login(ADMIN, PASSWORD)
    page.visit(f"/quarantine/{qid}", status=404, shot="deleted")
    assert "No such message in quarantine" in page.page.inner_text("main")


def test_the_dashboard_draws_what_the_gateway_did(stack: Stack, open_page: OpenPage) -> None:
    stack.send(spam("charted-1"), ["dave@example.test"])  # held: a QUARANTINE event
    page = open_page("dashboard")
    page.login(ADMIN, PASSWORD)
    page.visit("/dashboard?window=hour", shot="dashboard-hour")
    chart = page.page.locator("figure.chart-box > svg.chart[data-series='quarantined']")
    assert chart.count() == 1
    assert chart.is_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 50, box
    assert int(chart.get_attribute("data-points") or "0") >= 1
    # The line is drawn, and it rises off the baseline somewhere: the chart shows the event.
    line = page.page.locator("svg.chart[data-series='quarantined'] polyline.line")
    assert line.count() == 1 and line.is_visible()
    heights = {p.split(",")[1] for p in (line.get_attribute("points") or "").split()}
    assert len(heights) >= 2, heights
