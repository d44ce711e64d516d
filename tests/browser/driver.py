"""Chromium (Debian's package) driven by Playwright, and a page wrapper that notices script.

Playwright cannot download its own browser build here, so it launches the system's
``chromium`` by path, headless. Playwright passes ``--no-sandbox`` by default
(``chromium_sandbox=False``); nothing is added for root: Chromium's sandbox needs user
namespaces that a root CI container may not grant, and the pages under test are our own.

Trust in the console's self-signed certificate is by its key, not by switching checks off:
``--ignore-certificate-errors-spki-list`` accepts a chain holding that one public key, and the
browser reaches the console by the certificate's name (``--host-resolver-rules`` maps
``mx.example.test`` to 127.0.0.1), so a different certificate on that port would still be
refused. ``ignore_https_errors`` stays off.

:class:`Watched` records what script would leave behind: dialogs (``alert``), console messages
(``console.log``, and Chromium's own CSP violation reports, "Refused to ..."), uncaught page
errors, and the ``window.__pwned`` marker the test payloads set. Every page visit asserts the
status, saves a screenshot as an artefact and checks that nothing of that kind happened, so a
test for a new page is one call: ``watched.visit("/dashboard", shot="dashboard")``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, Playwright
from playwright.sync_api import Response as PageResponse

__all__ = ["ARTEFACTS", "Watched", "chromium_path", "launch"]

_REPO = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("EDGEWARD_ARTEFACTS") or _REPO / "build" / "artefacts") / "screenshots"


def chromium_path() -> str | None:
    return shutil.which("chromium")


def launch(playwright: Playwright, *, hostname: str, spki: str) -> Browser:
    executable = chromium_path()
    assert executable, "Debian's chromium is not installed (scripts/install-test-deps.sh installs it)"
    return playwright.chromium.launch(
        executable_path=executable,
        headless=True,
        args=[
            f"--host-resolver-rules=MAP {hostname} 127.0.0.1",
            f"--ignore-certificate-errors-spki-list={spki}",
        ],
        timeout=60_000,
    )


class Watched:
    """A page in a context of its own (own cookies), with every trace of script recorded."""

    def __init__(self, browser: Browser, origin: str, name: str) -> None:
        self.origin = origin
        self.name = name  # prefix of this page's screenshots
        self.context: BrowserContext = browser.new_context(
            base_url=origin, viewport={"width": 1280, "height": 900}
        )
        self.context.set_default_timeout(20_000)
        self.page: Page = self.context.new_page()
        self.dialogs: list[str] = []
        self.console: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message: Any) -> None:
        where = str(message.location.get("url", ""))
        if message.text.startswith("Failed to load resource"):
            # Chromium's network notice for any 4xx, the pages' own (a 401 login, a 410 link,
            # the favicon it asks for by itself) included: statuses are checked by visit(), and
            # an <img> from mail would be caught in the DOM.
            return
        self.console.append(f"{message.type}: {message.text} ({where})")

    def close(self) -> None:
        self.context.close()

    # -- moving around ----------------------------------------------------------------------

    def visit(self, path: str, *, status: int = 200, shot: str | None = None) -> PageResponse:
        """Open ``path``, expect ``status`` (after redirects), screenshot it, check no script ran."""
        response = self.page.goto(path, wait_until="load")
        assert response is not None, path
        assert response.status == status, f"{path}: {response.status}\n{self.page.content()[:2000]}"
        self.settled(shot)
        return response

    def settled(self, shot: str | None = None) -> None:
        """After a navigation (a visit, a click that posts a form): screenshot, then the checks."""
        self.page.wait_for_load_state("load")
        if shot:
            self.shot(shot)
        self.assert_no_script()

    def login(self, name: str, password: str) -> None:
        self.visit("/login", shot="login")
        self.page.get_by_label("Name").fill(name)
        self.page.get_by_label("Password").fill(password)
        with self.page.expect_navigation():
            self.page.get_by_role("button", name="Log in").click()
        # Administrators and readers land on the dashboard (end users on their quarantine).
        assert self.page.url == f"{self.origin}/dashboard", self.page.url
        self.settled()

    def shot(self, label: str) -> Path:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTEFACTS / f"{self.name}-{re.sub(r'[^A-Za-z0-9_.-]', '_', label)}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    # -- what script would leave behind ----------------------------------------------------

    def csp_violations(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m]

    def script_traces(self) -> dict[str, Any]:
        """Everything that shows script ran or was refused on the current page."""
        dom = self.page.evaluate(
            """() => ({
                pwned: window.__pwned === undefined ? null : String(window.__pwned),
                elements: [...document.querySelectorAll('script, svg, img, iframe, object, embed')]
                    .filter(e => !e.matches('figure.chart-box > svg.chart'))
                    .map(e => e.outerHTML.slice(0, 120)),
                handlers: [...document.querySelectorAll('*')].flatMap(e => [...e.attributes]
                    .filter(a => a.name.toLowerCase().startsWith('on')).map(a => e.tagName + ' ' + a.name)),
                js_links: [...document.querySelectorAll('[href], [action], [src]')]
                    .map(e => e.getAttribute('href') || e.getAttribute('action') || e.getAttribute('src'))
                    .filter(v => /^\\s*javascript:/i.test(v)),
            })"""
        )
        return {**dom, "dialogs": self.dialogs, "console": self.console, "errors": self.errors}

    def assert_no_script(self) -> None:
        traces = self.script_traces()
        found = {k: v for k, v in traces.items() if v}
        # A CSP report means markup from mail became script-bearing HTML: escaping failed even
        # if the policy then stopped it. It is printed in full for the reader of the failure.
        assert not found, f"script traces on {self.page.url}: {found}\nCSP reports: {self.csp_violations()}"
