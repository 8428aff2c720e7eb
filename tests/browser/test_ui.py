"""Issue 3 in a real browser: login, resumable upload, transcript, delete.

The app is the real process with the tiny English model; the recordings are
espeak-ng speech decoded by the real ffmpeg. The page uploads in 32 KiB
chunks (``window.pdUploadChunkBytes``) so a 40 s recording takes dozens of
PATCH requests, each held back a little so the test can pause and reload
while the upload is really in the middle.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    Dialog,
    Error,
    Locator,
    Page,
    Request,
    Response,
    Route,
    expect,
)

from tests.apprunner import RunningApp, tus_upload, wait_for_transcript
from tests.browser.conftest import login, wait_for_gradio
from tests.conftest import ENGLISH_SENTENCES, speak

CHUNK_BYTES = 32 * 1024
PATCH_DELAY_S = 0.08
TUS = {"Tus-Resumable": "1.0.0"}
TRANSCRIPT_TITLE = "samtal-om-handling"
SPOKEN_WORDS = ("fox", "lazy dog", "Stella", "cheese", "frog", "Wednesday")


@dataclass
class UploadTraffic:
    """The tus requests the page sent, as the browser saw them."""

    created: list[str] = field(default_factory=list)
    patch_offsets: list[int] = field(default_factory=list)

    def patches_since(self, count: int) -> list[int]:
        return self.patch_offsets[count:]


def watch_uploads(page: Page) -> UploadTraffic:
    """Record the page's tus requests and hold each PATCH back a little."""
    traffic = UploadTraffic()

    def on_request(request: Request) -> None:
        if request.method == "PATCH" and "/api/uploads/" in request.url:
            traffic.patch_offsets.append(int(request.headers["upload-offset"]))

    def on_response(response: Response) -> None:
        request = response.request
        if request.method == "POST" and request.url.endswith("/api/uploads/"):
            traffic.created.append(response.headers["location"])

    def slow_patch(route: Route) -> None:
        if route.request.method == "PATCH":
            time.sleep(PATCH_DELAY_S)
        # The page may have aborted the request (pause, reload) meanwhile.
        with contextlib.suppress(Error):
            route.continue_()

    page.on("request", on_request)
    page.on("response", on_response)
    page.route("**/api/uploads/**", slow_patch)
    return traffic


def server_offset(page: Page, app: RunningApp, location: str) -> int:
    """The upload's offset as the server has stored it (a tus HEAD)."""
    answer = page.request.head(app.url + location, headers=TUS)
    assert answer.status == 200, answer.status
    return int(answer.headers["upload-offset"])


def bar_share(page: Page) -> float:
    """How full the progress bar is, 0–1."""
    width = page.eval_on_selector("#pd-bar-fill", "el => el.style.width") or "0%"
    return float(width.rstrip("%")) / 100


def wait_for_share(page: Page, share: float, seen: list[float]) -> None:
    """Wait until the bar is at least ``share`` full, noting what it showed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen.append(bar_share(page))
        if seen[-1] >= share:
            return
        page.wait_for_timeout(30)
    raise AssertionError(f"the progress bar stayed at {seen[-1]:.0%}")


def status_text(page: Page) -> str:
    return page.inner_text("#pd-upload-status")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recording_row(app: RunningApp, title: str) -> sqlite3.Row | None:
    with contextlib.closing(sqlite3.connect(app.data_dir / "pd.sqlite3")) as conn:
        conn.row_factory = sqlite3.Row
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM recordings WHERE title = ?", (title,)
        ).fetchone()
        return row


def recording_cells(page: Page, title: str) -> Locator:
    """The recordings table's cells showing ``title`` (Gradio's grid cells)."""
    return page.locator("#pd-recordings [role=gridcell]", has_text=title)


def open_recording(page: Page, title: str) -> None:
    """Click the recording's row and wait for its detail view."""
    recording_cells(page, title).first.click()
    page.wait_for_selector("#pd-detail #pd-status :text('" + title + "')")


@pytest.fixture
def chunked_page(page: Page) -> Page:
    page.add_init_script(f"window.pdUploadChunkBytes = {CHUNK_BYTES};")
    return page


@pytest.fixture(scope="module")
def transcribed(
    browser_app: RunningApp, english_wav: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, object]:
    """Anna's recording of the six sentences, transcribed."""
    source = tmp_path_factory.mktemp("transcribed") / f"{TRANSCRIPT_TITLE}.wav"
    shutil.copyfile(english_wav, source)
    with browser_app.login("anna") as anna:
        tus_upload(anna, source)
    done = wait_for_transcript(None, browser_app, TRANSCRIPT_TITLE)
    assert done["state"] == "done", done
    return done


@pytest.fixture
def opened(page: Page, browser_app: RunningApp, transcribed: object) -> Iterator[Page]:
    """Anna's page with the transcribed recording open."""
    login(page, browser_app, "anna")
    open_recording(page, TRANSCRIPT_TITLE)
    page.wait_for_selector("#pd-transcript .pd-line")
    yield page


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
    assert "/login" in page.url


def test_signing_in_through_the_form_opens_the_app(
    page: Page, browser_app: RunningApp
) -> None:
    login(page, browser_app, "anna")

    assert page.locator("#pd-who").inner_text().startswith("Inloggad som anna")


def test_an_upload_paused_and_reloaded_resumes_from_the_servers_offset(
    chunked_page: Page, browser_app: RunningApp, english_wav: Path, tmp_path: Path
) -> None:
    page = chunked_page
    source = tmp_path / "klassrummet.wav"
    shutil.copyfile(english_wav, source)
    size = source.stat().st_size
    assert size > 20 * CHUNK_BYTES
    traffic = watch_uploads(page)
    before: list[float] = []
    after: list[float] = []
    login(page, browser_app, "anna")

    page.set_input_files("#pd-file", source)
    wait_for_share(page, 0.2, before)
    page.click("#pd-pause")
    assert status_text(page).startswith("Pausad")
    page.wait_for_timeout(600)
    paused_at = server_offset(page, browser_app, traffic.created[0])
    page.wait_for_timeout(400)
    assert server_offset(page, browser_app, traffic.created[0]) == paused_at
    assert 0 < paused_at < size

    sent = len(traffic.patch_offsets)
    page.click("#pd-resume")
    wait_for_share(page, 0.55, before)
    assert traffic.patches_since(sent)[0] == paused_at

    page.reload()
    wait_for_gradio(page)
    stored = server_offset(page, browser_app, traffic.created[0])
    assert "klassrummet.wav" in status_text(page)
    assert stored > paused_at
    sent = len(traffic.patch_offsets)
    page.set_input_files("#pd-file", source)
    wait_for_share(page, 0.01, after)
    resumed_share = after[-1]
    page.wait_for_selector("#pd-upload-status:has-text('Uppladdningen är klar')")

    assert len(traffic.created) == 1, "the reload must not start a new upload"
    assert traffic.patches_since(sent)[0] == stored
    assert resumed_share >= stored / size - 0.01
    assert before == sorted(before)
    assert len({round(s, 2) for s in before if 0 < s < 1}) >= 5, before
    assert bar_share(page) == 1
    expect(recording_cells(page, "klassrummet")).to_have_count(1)
    row = recording_row(browser_app, "klassrummet")
    assert row is not None and row["owner"] == "anna"
    assert sha256(Path(row["source_path"])) == sha256(source)


def test_an_opened_recording_shows_the_spoken_words(opened: Page) -> None:
    text = opened.inner_text("#pd-transcript")

    for words in SPOKEN_WORDS:
        assert words.lower() in text.lower(), (words, text)
    assert opened.locator("#pd-transcript .pd-time").first.inner_text() == "00:00"


def test_the_txt_download_holds_the_transcript(opened: Page, tmp_path: Path) -> None:
    with opened.expect_download() as started:
        opened.click("#pd-downloads a.pd-download:text-is('TXT')")
    download = started.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)

    assert saved.name == f"{TRANSCRIPT_TITLE}.txt"
    text = saved.read_text(encoding="utf-8")
    for words in SPOKEN_WORDS:
        assert words.lower() in text.lower(), (words, text)


def test_clicking_a_transcript_line_moves_the_audio_there(opened: Page) -> None:
    line = opened.locator("#pd-transcript .pd-line").nth(2)
    start = float(line.get_attribute("data-start") or "0")
    assert start > 3

    line.click()
    position = opened.eval_on_selector("#pd-audio", "a => a.currentTime")

    assert start <= position < start + 2


def test_deleting_a_recording_asks_first_then_removes_it_everywhere(
    page: Page, browser_app: RunningApp, tmp_path: Path
) -> None:
    source = speak(ENGLISH_SENTENCES[0], tmp_path / "bort-med-den.wav")
    with browser_app.login("anna") as anna:
        tus_upload(anna, source)
    assert wait_for_transcript(None, browser_app, "bort-med-den")["state"] == "done"
    row = recording_row(browser_app, "bort-med-den")
    assert row is not None
    folder = browser_app.data_dir / "recordings" / row["id"]
    assert folder.is_dir()
    login(page, browser_app, "anna")
    open_recording(page, "bort-med-den")

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#pd-delete")
    page.wait_for_timeout(1000)
    assert recording_row(browser_app, "bort-med-den") is not None

    questions: list[str] = []

    def accept(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click("#pd-delete")
    page.wait_for_selector("#pd-message :text('är borttagen')")
    expect(recording_cells(page, "bort-med-den")).to_have_count(0)

    assert questions == ["Ta bort inspelningen och all dess text och ljud?"]
    assert recording_row(browser_app, "bort-med-den") is None
    assert not folder.exists()
    expect(page.locator("#pd-detail")).to_be_hidden()
