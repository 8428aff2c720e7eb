"""Comparing engines in a real browser: confirm, see both sides, choose, edit.

Side A is the app's local tiny.en model; side B is the OpenAI engine talking
to the scripted OpenAI-compatible server on loopback, which says what was
spoken with one word changed, so the page must mark that word.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from typing import Any

import jiwer
import pytest
from playwright.sync_api import Page, expect

from tests.apprunner import RunningApp, tus_upload, wait_for_transcript
from tests.browser.conftest import login
from tests.conftest import ENGLISH_SENTENCES, concat, speak
from tests.models import conftest as model_fixtures
from tests.models.conftest import FakeOpenAI

_fake_openai_server = model_fixtures._fake_openai_server
fake_openai = model_fixtures.fake_openai

TITLE = "jamfor-i-webblasaren"
SAID_BY_B = ENGLISH_SENTENCES[0].replace("fox", "zebra")
JIWER_WORDS = jiwer.Compose(
    [
        jiwer.ToLowerCase(),
        jiwer.RemovePunctuation(),
        jiwer.RemoveMultipleSpaces(),
        jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ]
)
SLOW_MS = 60_000


@pytest.fixture(scope="module")
def app_extra_env(_fake_openai_server: FakeOpenAI) -> dict[str, str]:
    return {"PD_OPENAI_BASE_URL": _fake_openai_server.base_url}


@pytest.fixture(scope="module")
def transcribed(
    browser_app: RunningApp, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, object]:
    """Anna's recording of the first sentence, transcribed by the local model."""
    folder = tmp_path_factory.mktemp("compare")
    part = speak(ENGLISH_SENTENCES[0], folder / "part.wav", gap_s=1.0)
    source = concat([part], folder / f"{TITLE}.wav")
    with browser_app.login("anna") as anna:
        tus_upload(anna, source)
    done = wait_for_transcript(None, browser_app, TITLE)
    assert done["state"] == "done", done
    return done


def answer(text: str) -> dict[str, Any]:
    """A verbose_json body saying ``text`` in one timed segment."""
    segment = {"id": 0, "start": 0.2, "end": 3.0, "text": f" {text}"}
    return {
        "task": "transcribe",
        "language": "en",
        "duration": 3.0,
        "text": f" {text}",
        "segments": [segment],
    }


def opened(page: Page, app: RunningApp) -> Page:
    login(page, app, "anna")
    page.locator("#pd-recordings [role=gridcell]", has_text=TITLE).first.click()
    page.wait_for_selector(f"#pd-detail #pd-status :text('{TITLE}')")
    page.get_by_text("Jämför motorer").click()
    return page


def texts(app: RunningApp, comparison_id: str) -> tuple[str, str]:
    """Both sides' text straight from the database."""
    with contextlib.closing(sqlite3.connect(app.data_dir / "pd.sqlite3")) as conn:
        ids = conn.execute(
            "SELECT reference_id, other_id FROM comparisons WHERE id = ?",
            (comparison_id,),
        ).fetchone()
        said = [
            " ".join(
                r[0]
                for r in conn.execute(
                    "SELECT text FROM transcript_segments WHERE transcript_id = ?"
                    " ORDER BY idx",
                    (transcript_id,),
                )
            )
            for transcript_id in ids
        ]
    return said[0], said[1]


def field(page: Page, elem_id: str) -> Any:
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def test_a_confirmed_comparison_shows_both_sides_the_figure_and_marked_words(
    page: Page,
    browser_app: RunningApp,
    transcribed: object,
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.then(200, answer(SAID_BY_B))
    opened(page, browser_app)
    expect(page.locator("#pd-compare-engine input[value=openai]")).to_be_checked()
    field(page, "pd-compare-from").fill("0:01")
    field(page, "pd-compare-to").fill("0:02")

    page.click("#pd-compare-ask")
    terms = page.locator("#pd-compare-terms")
    expect(terms).to_contain_text("Ljudet skickas till OpenAI (127.0.0.1)")
    expect(terms).to_contain_text("Beräknad kostnad:")
    expect(terms).to_contain_text("Du valde 0:01–0:02")
    assert fake_openai.received == []  # nothing is sent before the answer
    page.click("#pd-compare-yes")

    view = page.locator("#pd-compare-view")
    expect(view.locator(".pd-agreement[data-agreement]")).to_be_visible(timeout=SLOW_MS)
    comparison_id = view.locator(".pd-compare").get_attribute("data-comparison")
    assert comparison_id and len(fake_openai.received) == 1
    a_text, b_text = texts(browser_app, comparison_id)
    expected = jiwer.process_words(
        a_text,
        b_text,
        reference_transform=JIWER_WORDS,
        hypothesis_transform=JIWER_WORDS,
    )
    errors = expected.substitutions + expected.deletions + expected.insertions
    longer = max(len(JIWER_WORDS(t)[0]) for t in (a_text, b_text))
    shown = f"{(1 - errors / longer) * 100:.1f} %".replace(".", ",")
    expect(view.locator(".pd-agreement")).to_contain_text(f"överens om {shown}")
    rows = view.locator("table.pd-compare-rows tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.locator("td").nth(1)).to_contain_text("lazy dog")
    expect(rows.locator("td").nth(2)).to_contain_text(SAID_BY_B.rstrip("."))
    marked = rows.locator("td").nth(2).locator(".pd-w.pd-sub, .pd-w.pd-ins")
    expect(marked.filter(has_text="zebra")).to_have_count(1)
    assert "0,0000 USD" not in view.inner_text()  # B has a cost, A has none


def test_choosing_b_then_editing_changes_the_recordings_transcript(
    page: Page,
    browser_app: RunningApp,
    transcribed: object,
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.then(200, answer(SAID_BY_B))
    opened(page, browser_app)
    page.click("#pd-compare-ask")
    page.click("#pd-compare-yes")
    # The page still shows the earlier test's finished comparison until the
    # answer to "Ja, starta" replaces it along with this message.
    expect(page.locator("#pd-compare-message")).to_contain_text(
        "startad", timeout=SLOW_MS
    )
    view = page.locator("#pd-compare-view")
    expect(view.locator(".pd-agreement[data-agreement]")).to_be_visible(timeout=SLOW_MS)

    page.click("#pd-use-b")
    expect(page.locator("#pd-compare-message")).to_contain_text(
        "B är nu", timeout=SLOW_MS
    )
    expect(page.locator("#pd-transcript")).to_contain_text("zebra", timeout=SLOW_MS)

    page.get_by_text("Redigera den sammanfogade texten").click()
    page.click("#pd-compare-base input[value=b]")
    page.click("#pd-compare-fill")
    editor = field(page, "pd-compare-text")
    expect(editor).to_have_value(re.compile(r"^\[00:00:0\d\.\d\] .*zebra", re.S))
    editor.fill(editor.input_value().replace("zebra", "räv"))
    page.click("#pd-compare-save")
    expect(page.locator("#pd-compare-message")).to_contain_text(
        "sparad", timeout=SLOW_MS
    )
    expect(page.locator("#pd-transcript")).to_contain_text("räv", timeout=SLOW_MS)
    expect(page.locator("#pd-transcript")).not_to_contain_text("zebra")
