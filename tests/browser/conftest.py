"""Headless Chromium against the real app: fixtures for the browser tests.

Playwright's sync API drives Debian's ``/usr/bin/chromium`` (Playwright cannot
download its own browser here). What a browser test gets:

- ``browser_app``: the real app (``python app.py``, tiny English model) with
  anna and bert, one per test module. A module changes the app's environment
  by overriding the ``app_extra_env`` fixture (module scope, a dict).
- ``browser``: one headless Chromium for the whole session.
- ``launch_browser(extra_args)``: another Chromium with more command-line
  flags (fake microphone and the like), closed when the test ends.
- ``page``: a fresh page in its own context (no cookies, no storage), closed
  after the test; pages of ``launch_browser``'s browsers come from
  ``new_page(browser)``.
- ``login(page, app, "anna")``: signs in through the form, waits for Gradio
  and returns the page, now on ``/app/``.
- ``wait_for_gradio(page)``: returns once Gradio has rendered the app and
  its first load events have filled the page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.apprunner import PASSWORDS, RunningApp, app_with_users

CHROMIUM = "/usr/bin/chromium"
# Without the networking flags Chromium keeps calling home, which floods the
# closed network here and slows every test.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# Short enough that a broken page fails fast, long enough for two busy cores.
ACTION_TIMEOUT_MS = 15_000
GRADIO_TIMEOUT_MS = 30_000

LaunchBrowser = Callable[[Sequence[str]], Browser]


# Module scope: Playwright's sync API keeps an asyncio loop running in this
# thread while it is open, and tests in other folders call asyncio.run().
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


def launch_chromium(playwright: Playwright, extra_args: Sequence[str] = ()) -> Browser:
    """Debian's Chromium, headless, with ``extra_args`` after the usual flags."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed; scripts/test installs it")
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[*CHROMIUM_ARGS, *extra_args],
    )


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = launch_chromium(playwright)
    yield chromium
    chromium.close()


@pytest.fixture
def launch_browser(playwright: Playwright) -> Iterator[LaunchBrowser]:
    """A function starting a Chromium with extra flags; all closed afterwards."""
    launched: list[Browser] = []

    def launch(extra_args: Sequence[str]) -> Browser:
        chromium = launch_chromium(playwright, extra_args)
        launched.append(chromium)
        return chromium

    yield launch
    for chromium in launched:
        chromium.close()


def new_page(browser: Browser) -> Page:
    """A page in a context of its own, in Swedish, with the short timeouts."""
    context = browser.new_context(locale="sv-SE", accept_downloads=True)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    return context.new_page()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = new_page(browser)
    yield opened
    opened.context.close()


@pytest.fixture(scope="module")
def app_extra_env() -> dict[str, str]:
    """Environment variables added to the module's app; override to change."""
    return {}


@pytest.fixture(scope="module")
def browser_app(
    tmp_path_factory: pytest.TempPathFactory, app_extra_env: dict[str, str]
) -> Iterator[RunningApp]:
    data_dir = tmp_path_factory.mktemp("browser-app") / "data"
    with app_with_users(data_dir, **app_extra_env) as app:
        yield app


def login(page: Page, app: RunningApp, name: str) -> Page:
    """Sign ``name`` in through the login form; the page, rendered, on /app/."""
    page.goto(app.url + "/login")
    page.fill("#username", name)
    page.fill("#password", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_url("**/app/**")
    wait_for_gradio(page)
    return page


def wait_for_gradio(page: Page, timeout_ms: float = GRADIO_TIMEOUT_MS) -> None:
    """Return once Gradio has rendered and its load events have filled the page.

    "Inloggad som" is written by the page's load event, so seeing it means the
    Blocks are mounted and the first round trip to the server is done.
    """
    page.wait_for_selector("#pd-upload-status", timeout=timeout_ms)
    page.wait_for_selector("#pd-who :text('Inloggad som')", timeout=timeout_ms)
