"""What another site can make a logged-in administrator's browser do to the console: nothing.

These hold only in a real browser, which is why they are here and not in ``tests/web``: the
session cookie is ``SameSite=Strict``, so a form on another site that posts to the console
arrives without it (and without the CSRF token), and ``frame-ancestors 'none'`` with
``X-Frame-Options: DENY`` keeps the console out of another site's frames (no click-jacking).
The other site is served by the browser's own request routing, at https://elsewhere.test/.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Route

from tests.browser.driver import Watched
from tests.browser.stack import ADMIN, PASSWORD, Stack
from tests.browser.test_console_pages import spam
from tests.e2e.test_web_console import Browser as Client

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
OpenPage = Callable[[str], Watched]
ELSEWHERE = "https://elsewhere.test/"


def _held(stack: Stack, tag: str, rcpt: str) -> str:
    stack.send(spam(tag), [rcpt])
    with Client(stack.web_port, stack.cert) as api:
        found = api.get("/api/v1/quarantine", params={"subject": tag},
                        headers={"Authorization": f"Bearer {stack.reader_token}"})  # fmt: skip
        [entry] = found.json()["entries"]
        return str(entry["qid"])


def _still_held(stack: Stack, qid: str) -> bool:
    with Client(stack.web_port, stack.cert) as api:
        r = api.get(f"/api/v1/quarantine/{qid}", headers={"Authorization": f"Bearer {stack.reader_token}"})
        return r.status_code == 200


def _serve_elsewhere(page: Watched, html: str) -> None:
    def answer(route: Route) -> None:
        route.fulfill(status=200, body=html, headers={"content-type": "text/html"})

    page.page.route(f"{ELSEWHERE}**", answer)


def test_a_form_on_another_site_cannot_delete(stack: Stack, open_page: OpenPage) -> None:
    qid = _held(stack, "cross-site-1", "ivan@example.test")
    page = open_page("admin")
    page.login(ADMIN, PASSWORD)
    _serve_elsewhere(
        page,
        f"""<!doctype html><form method="post" action="{stack.origin}/quarantine/{qid}/delete">
        <input type="hidden" name="csrf" value="guessed"><button>Win a prize</button></form>""",
    )
    page.page.goto(ELSEWHERE)
    with page.page.expect_navigation():
        page.page.get_by_role("button", name="Win a prize").click()
    page.settled(shot="after-cross-site-post")
    # The cookie stayed home: the console saw no session and asked for a login.
    assert page.page.url == f"{stack.origin}/login", page.page.url
    assert _still_held(stack, qid)
    page.visit(f"/quarantine/{qid}", shot="still-logged-in")  # the session itself lives on
    assert page.page.locator("form.delete").count() == 1


def test_another_site_cannot_frame_the_console(stack: Stack, open_page: OpenPage) -> None:
    page = open_page("admin")
    page.login(ADMIN, PASSWORD)
    _serve_elsewhere(
        page,
        f"""<!doctype html>
        <iframe name="console" src="{stack.origin}/quarantine" width=600 height=400></iframe>
        <iframe name="control" src="{stack.origin}/__frameable" width=300 height=100></iframe>""",
    )

    def frameable(route: Route) -> None:  # the same origin without the console's headers
        route.fulfill(
            status=200, body="<!doctype html><h1>framed</h1>", headers={"content-type": "text/html"}
        )

    page.page.route(f"{stack.origin}/__frameable", frameable)
    page.page.goto(ELSEWHERE)
    page.page.wait_for_load_state("load")
    page.shot("framed")
    console, control = page.page.frame(name="console"), page.page.frame(name="control")
    assert console is not None and control is not None
    assert control.locator("h1").inner_text() == "framed"  # framing as such works here
    # For the console, Chromium put its own error page in the frame instead.
    assert console.url.startswith("chrome-error://"), console.url
