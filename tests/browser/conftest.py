"""Fixtures of the browser tests: one running stack and one Chromium for the whole run (tests
tell their mail apart by subject, Message-ID and recipient), a fresh browser context (own
cookies) per page a test opens. Screenshots go to ``ARTEFACTS``, which
the run prints at its end."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.browser.stack import HOSTNAME, Stack, running_stack
from tests.e2e.harness import SMTP_SINK, shared_tmpdir

try:
    from playwright.sync_api import Browser, sync_playwright

    from tests.browser.driver import ARTEFACTS, Watched, chromium_path, launch
except ImportError:  # the test extras are not installed: every test here skips
    sync_playwright = None  # type: ignore[assignment]


@pytest.fixture(scope="package")
def stack() -> Iterator[Stack]:
    if sync_playwright is None or chromium_path() is None:
        why = "playwright or Debian's chromium is missing (scripts/install-test-deps.sh, dev extras)"
        if os.environ.get("CI"):  # CI installs both: a skip there would hide a broken set-up
            pytest.fail(why)
        pytest.skip(why)
    if not Path(SMTP_SINK).exists():
        pytest.skip("Postfix's smtp-sink is not installed (scripts/install-test-deps.sh installs it)")
    root = shared_tmpdir("edgeward-browser-")
    try:
        with running_stack(root) as s:
            yield s
    finally:
        shutil.rmtree(root, ignore_errors=True)


# Package scope, not session: Playwright's sync API keeps an event loop running in the main
# thread while it is open, and every test after this folder that calls asyncio.run would fail.
@pytest.fixture(scope="package")
def browser(stack: Stack) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        b = launch(playwright, hostname=HOSTNAME, spki=stack.spki)
        yield b
        b.close()


@pytest.fixture
def open_page(
    browser: Browser, stack: Stack, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Watched]]:
    """``open_page(label)``: a new watched page; its screenshots are named ``<test>-<label>-...``."""
    opened: list[Watched] = []

    def new(label: str) -> Watched:
        page = Watched(browser, stack.origin, f"{request.node.name}-{label}")
        opened.append(page)
        return page

    yield new
    for page in opened:
        page.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if sync_playwright is not None and ARTEFACTS.is_dir():
        terminalreporter.write_line(f"browser screenshots: {ARTEFACTS}")
