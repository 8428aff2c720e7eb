"""Recording in the page, in headless Chromium with a fake microphone.

Chromium plays a known espeak-ng WAV as its microphone, over and over. The
page's MediaRecorder pieces go to the real app's tus endpoint while it
records; the tests look at the upload on the server's disk as it grows, then
at the transcript the tiny English model makes of it: after stopping, after a
reload in the middle, after the network was down for a while, and after the
tab is closed and never comes back.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect

from tests.apprunner import RunningApp
from tests.browser.conftest import LaunchBrowser, login, new_page, wait_for_gradio
from tests.conftest import ffmpeg, speak

SPOKEN = (
    "The quick brown fox jumps over the lazy dog."
    " Please call Stella and ask her to bring these things from the store."
)
HEARD = ("fox", "lazy", "store")
# The server ends a recording that sent nothing for this long (15 s).
IDLE_MINUTES = "0.25"


@pytest.fixture(scope="module")
def app_extra_env() -> dict[str, str]:
    return {"PD_RECORDING_IDLE_MINUTES": IDLE_MINUTES}


@pytest.fixture(scope="module")
def microphone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 9 s of speech at 48 kHz, what a microphone would give."""
    folder = tmp_path_factory.mktemp("microphone")
    spoken = speak(SPOKEN, folder / "spoken.wav", gap_s=1.0)
    target = folder / "microphone.wav"
    ffmpeg(["-i", str(spoken), "-ar", "48000", "-ac", "1", str(target)])
    return target


@pytest.fixture
def microphone(launch_browser: LaunchBrowser, microphone_wav: Path) -> Browser:
    """A Chromium whose microphone plays ``microphone_wav``, allowed at once."""
    return launch_browser(
        [
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone_wav}",
        ]
    )


@pytest.fixture
def recorder_page(microphone: Browser, browser_app: RunningApp) -> Iterator[Page]:
    page = new_page(microphone)
    login(page, browser_app, "anna")
    yield page
    with contextlib.suppress(Exception):
        page.context.close()


def recorded_seconds(page: Page) -> int:
    minutes, seconds = page.inner_text("#pd-record-time").strip().split(":")
    return int(minutes) * 60 + int(seconds)


def record_for(page: Page, seconds: int, levels: list[float] | None = None) -> None:
    """Wait until the page's clock shows ``seconds``, noting the input level."""
    deadline = time.monotonic() + seconds + 20
    while recorded_seconds(page) < seconds:
        assert time.monotonic() < deadline, page.inner_text("#pd-record-status")
        if levels is not None:
            level = page.get_attribute("#pd-record-level", "data-level")
            levels.append(float(level or 0))
        page.wait_for_timeout(200)


def recording_ids(app: RunningApp) -> set[str]:
    with contextlib.closing(sqlite3.connect(app.data_dir / "pd.sqlite3")) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM recordings")}


def wait_for_new_transcript(
    app: RunningApp, before: set[str], timeout: float = 120
) -> dict[str, object]:
    """The one recording made since ``before``, once its transcript is done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(app.data_dir / "pd.sqlite3")) as conn:
            conn.row_factory = sqlite3.Row
            rows = [
                dict(row)
                for row in conn.execute(
                    "SELECT r.id, r.title, r.owner, r.source_name, r.duration_s,"
                    " r.size_bytes,"
                    " r.state AS recording_state, t.state, t.error,"
                    " (SELECT group_concat(text, ' ') FROM transcript_segments s"
                    "   WHERE s.transcript_id = t.id) AS text"
                    " FROM recordings r JOIN transcripts t ON t.recording_id = r.id"
                )
                if row["id"] not in before
            ]
        assert len(rows) <= 1, rows
        if rows and rows[0]["state"] in ("done", "failed"):
            return rows[0]
        time.sleep(0.5)
    raise AssertionError(f"no new transcript in {timeout} s")


def unfinished_uploads(app: RunningApp) -> dict[Path, int]:
    """The sizes of the uploads on the server's disk that are not handed over."""
    root = app.data_dir / "uploads"
    return {
        path: path.stat().st_size
        for path in root.glob("*/*")
        if path.is_file() and "." not in path.name
    }


def assert_heard(row: dict[str, object]) -> None:
    assert row["state"] == "done", row
    text = str(row["text"] or "").lower()
    for word in HEARD:
        assert word in text, (word, text)


def test_a_recording_is_uploaded_while_it_runs_and_transcribed_after_stop(
    recorder_page: Page, browser_app: RunningApp
) -> None:
    page = recorder_page
    before = recording_ids(browser_app)
    offsets: list[int] = []

    def on_request(request: Request) -> None:
        if request.method == "PATCH" and "/api/uploads/" in request.url:
            offsets.append(int(request.headers["upload-offset"]))

    page.on("request", on_request)
    levels: list[float] = []

    page.click("#pd-record-start")
    record_for(page, 4, levels)
    (early,) = unfinished_uploads(browser_app).values()
    record_for(page, 10, levels)
    (later,) = unfinished_uploads(browser_app).values()
    expect(page.locator("#pd-record-start")).to_be_disabled()
    page.click("#pd-record-stop")
    expect(page.locator("#pd-record-status")).to_contain_text(
        "är uppladdad", timeout=20_000
    )
    row = wait_for_new_transcript(browser_app, before)

    assert 0 < early < later
    assert len(offsets) >= 8
    assert offsets == sorted(offsets)
    assert max(levels) > 0.3
    assert_heard(row)
    assert row["owner"] == "anna"
    assert str(row["source_name"]).startswith("Inspelning ")
    assert str(row["source_name"]).endswith(".webm")
    assert 9 <= float(str(row["duration_s"])) <= 14
    assert unfinished_uploads(browser_app) == {}
    expect(page.locator("#pd-record-start")).to_be_enabled()


def test_audio_recorded_while_the_network_is_down_arrives_afterwards(
    recorder_page: Page, browser_app: RunningApp
) -> None:
    page = recorder_page
    before = recording_ids(browser_app)
    # Gradio reloads its page when its connection comes back; the recorder
    # makes the browser ask first, and this user stays.
    asked: list[str] = []
    page.on("dialog", lambda dialog: (asked.append(dialog.type), dialog.dismiss()))

    page.click("#pd-record-start")
    record_for(page, 2)
    page.context.set_offline(True)
    expect(page.locator("#pd-record-status")).to_contain_text(
        "Anslutningen bröts", timeout=10_000
    )
    (at_outage,) = unfinished_uploads(browser_app).values()
    record_for(page, 6)
    (during_outage,) = unfinished_uploads(browser_app).values()
    page.context.set_offline(False)
    record_for(page, 10)
    page.click("#pd-record-stop")
    expect(page.locator("#pd-record-status")).to_contain_text(
        "är uppladdad", timeout=30_000
    )
    row = wait_for_new_transcript(browser_app, before)

    assert during_outage == at_outage
    assert set(asked) <= {"beforeunload"}
    assert_heard(row)
    assert 9 <= float(str(row["duration_s"])) <= 14


def test_a_reload_mid_recording_keeps_what_was_recorded_before_it(
    recorder_page: Page, browser_app: RunningApp
) -> None:
    page = recorder_page
    before = recording_ids(browser_app)
    asked: list[str] = []
    page.on("dialog", lambda dialog: (asked.append(dialog.type), dialog.accept()))

    page.click("#pd-record-start")
    record_for(page, 3)
    # From here the pieces reach no server: only the browser holds them.
    page.route("**/api/uploads/**", refuse_patches)
    page.wait_for_timeout(1500)
    (on_server,) = unfinished_uploads(browser_app).values()
    record_for(page, 10)
    assert list(unfinished_uploads(browser_app).values()) == [on_server]
    recorded_before_reload = recorded_seconds(page)
    page.unroute("**/api/uploads/**")
    page.reload()
    wait_for_gradio(page)
    expect(page.locator("#pd-record-status")).to_contain_text("avbröts", timeout=20_000)
    row = wait_for_new_transcript(browser_app, before)

    assert asked == ["beforeunload"]
    assert_heard(row)
    duration = float(str(row["duration_s"]))
    assert recorded_before_reload - 2 <= duration <= recorded_before_reload + 2
    assert int(str(row["size_bytes"])) > 2 * on_server
    assert unfinished_uploads(browser_app) == {}
    assert page.evaluate("localStorage.getItem('pd-recording')") is None
    expect(page.locator("#pd-record-start")).to_be_enabled()


def refuse_patches(route: Route) -> None:
    if route.request.method == "PATCH":
        route.abort()
    else:
        route.continue_()


def test_a_closed_tab_is_ended_by_the_server_and_transcribed(
    recorder_page: Page, browser_app: RunningApp
) -> None:
    page = recorder_page
    before = recording_ids(browser_app)

    page.click("#pd-record-start")
    record_for(page, 10)
    page.context.close()
    closed_at = time.monotonic()
    (left,) = unfinished_uploads(browser_app).values()
    row = wait_for_new_transcript(browser_app, before, timeout=60 + 15)

    assert left > 0
    assert time.monotonic() - closed_at >= 15 - 2
    assert_heard(row)
    assert unfinished_uploads(browser_app) == {}
