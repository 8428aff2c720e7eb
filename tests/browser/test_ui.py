"""Issue 3 in a real browser: login, resumable upload, transcript, delete."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.apprunner import RunningApp
from tests.browser.conftest import login


def test_a_visitor_is_sent_to_the_login_form(
    page: Page, browser_app: RunningApp
) -> None:
    page.goto(browser_app.url + "/app/")

    assert "/login" in page.url
    assert page.locator("#username").is_visible()
    assert page.title() == "Logga in – PedagogiskDialog"


def test_a_wrong_password_shows_the_swedish_message(
    page: Page, browser_app: RunningApp
) -> None:
    page.goto(browser_app.url + "/login")
    page.fill("#username", "bert")
    page.fill("#password", "inte-berts-lösen")
    page.click("button[type=submit]")

    alert = page.locator("p.fel[role=alert]")
    assert alert.inner_text() == "Fel användarnamn eller lösenord."
    assert page.locator("#username").input_value() == "bert"


def test_signing_in_through_the_form_opens_the_app(
    page: Page, browser_app: RunningApp
) -> None:
    login(page, browser_app, "anna")

    assert page.locator("#pd-who").inner_text().startswith("Inloggad som anna")
