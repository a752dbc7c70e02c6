"""
Fixtures that drive a real headless Chromium through Playwright.

`playwright install` downloads a browser build that this network cannot reach, so the tests
launch Debian's `chromium` package (`scripts/ensure_browser.sh` installs it). The root
conftest registers this module as a plugin, so any test can ask for `browser_page`.

Playwright's sync API keeps an asyncio loop running on the test thread from the moment it
starts until it stops, so Django treats every ORM call made by the test (and by
pytest-django's database fixtures) as coming from async code and raises
SynchronousOnlyOperation. `playwright_browser` therefore sets DJANGO_ALLOW_ASYNC_UNSAFE for as
long as Playwright runs, which is the rest of the session once a browser test has started.
"""

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
DEFAULT_TIMEOUT_MS = 15_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def playwright_browser() -> Iterator[Browser]:
    """One headless Chromium for the whole session."""
    if not os.access(CHROMIUM, os.X_OK):
        # Fail, never skip: a browser test that skips when the browser is missing cannot fail.
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: run scripts/ensure_browser.sh "
            "(apt-get install chromium fonts-liberation) before the browser tests.",
            pytrace=False,
        )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            expect.set_options(timeout=DEFAULT_TIMEOUT_MS)
            try:
                yield browser
            finally:
                browser.close()


@pytest.fixture
def browser_page(playwright_browser: Browser) -> Iterator[Page]:
    """A fresh page in its own context (no cookies or storage shared between tests)."""
    context = playwright_browser.new_context()
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()
