"""Share links in a real browser: the owner makes one, a stranger reads it.

The owner works in the app's page; the stranger is a fresh browser context
with no cookies and no storage, opening only the address the page showed.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.apprunner import RunningApp, tus_upload, wait_for_transcript
from tests.browser.conftest import login, new_page
from tests.conftest import ENGLISH_SENTENCES, speak

TITLE = "delad-i-webblasaren"


@pytest.fixture(scope="module")
def transcribed(
    browser_app: RunningApp, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("sharing")
    source = speak(ENGLISH_SENTENCES[0], folder / f"{TITLE}.wav", gap_s=0.5)
    with browser_app.login("anna") as anna:
        tus_upload(anna, source)
    done = wait_for_transcript(None, browser_app, TITLE)
    assert done["state"] == "done", done
    return done


def open_recording(page: Page, title: str) -> None:
    page.locator("#pd-recordings [role=gridcell]", has_text=title).first.click()
    page.wait_for_selector(f"#pd-detail #pd-status :text('{title}')")


def test_a_link_made_in_the_page_works_for_a_stranger_until_revoked(
    page: Page, browser: Browser, browser_app: RunningApp, transcribed: object
) -> None:
    login(page, browser_app, "anna")
    open_recording(page, TITLE)
    expect(page.locator("#pd-share-list")).to_contain_text("Inga delade länkar")

    page.click("#pd-share-create")
    address = page.locator("#pd-share-new input.pd-share-url")
    link_pattern = re.escape(f"{browser_app.url}/s/") + r"[A-Za-z0-9_-]{43}"
    expect(address).to_have_value(re.compile(link_pattern), timeout=15_000)
    url = address.input_value()
    expect(page.locator("#pd-share-list")).to_contain_text("Aktiv")

    stranger = new_page(browser)
    try:
        shown = stranger.goto(url)
        assert shown is not None and shown.status == 200
        expect(stranger.locator("h1")).to_have_text(TITLE)
        text = stranger.inner_text("main").lower()
        assert "fox" in text and "lazy dog" in text
        assert stranger.locator("audio").count() == 0
        assert stranger.context.cookies() == []

        questions: list[str] = []

        def accept(dialog: Dialog) -> None:
            questions.append(dialog.message)
            dialog.accept()

        page.click("#pd-share-pick input")
        page.locator("[role=option]", has_text="skapad").first.click()
        page.once("dialog", accept)
        page.click("#pd-share-revoke")
        expect(page.locator("#pd-share-new")).to_contain_text("återkallad")
        expect(page.locator("#pd-share-list")).to_contain_text("Återkallad")
        assert questions == ["Återkalla länken? Den slutar fungera direkt."]

        gone = stranger.goto(url)
        assert gone is not None and gone.status == 410
        expect(stranger.locator("main")).to_contain_text(
            "Länken har återkallats av den som delade den."
        )
        assert "fox" not in stranger.inner_text("main").lower()
    finally:
        stranger.context.close()


def test_audio_is_on_the_shared_page_only_when_ticked(
    page: Page, browser: Browser, browser_app: RunningApp, transcribed: object
) -> None:
    login(page, browser_app, "anna")
    open_recording(page, TITLE)

    page.check("#pd-share-audio input")
    page.click("#pd-share-create")
    address = page.locator("#pd-share-new input.pd-share-url")
    expect(address).to_be_visible(timeout=15_000)
    url = address.input_value()

    stranger = new_page(browser)
    try:
        stranger.goto(url)
        audio = stranger.locator("audio")
        expect(audio).to_have_count(1)
        stranger.wait_for_function(
            "() => document.querySelector('audio').readyState >= 1", timeout=15_000
        )
        duration = stranger.eval_on_selector("audio", "a => a.duration")
        assert 1 < duration < 10
    finally:
        stranger.context.close()
