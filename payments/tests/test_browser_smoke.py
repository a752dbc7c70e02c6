"""Proves the suite can drive a real headless Chromium against a live server."""

import pytest
from playwright.sync_api import expect


@pytest.mark.browser
def test_browser_reaches_the_live_server(live_server, browser_page):
    response = browser_page.goto(live_server.url + "/health/live")
    assert response is not None and response.status == 200
    assert "ok" in browser_page.inner_text("body")

    browser_page.goto(live_server.url + "/admin/login/")
    expect(browser_page.locator("input[name=username]")).to_be_visible()
