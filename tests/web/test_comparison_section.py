"""The comparison section: what it says in each state, and that it is private.

The views are rendered from comparisons stored in a real database. The
privacy test drives the real app's Gradio queue the way a browser does, as
another user, with the owner's ids in every argument.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline import comparison
from pipeline.config import Settings
from pipeline.storage import Segment, Store
from tests.apprunner import RunningApp, tus_upload, wait_for_transcript
from web import comparison_views

SAID_BY_A = ["Vi pratade om läsning.", "Eleverna läser varje dag."]


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "data") as store:
        yield store


def recording_with_reference(store: Store, texts: list[str] = SAID_BY_A) -> str:
    """A ready recording of two 10 s segments whose transcript says ``texts``."""
    recording_id = store.add_recording(
        owner="anna",
        title="Samtal",
        source_name="samtal.wav",
        source_path=store.data_dir / "samtal.wav",
        fingerprint=uuid.uuid4().hex,
        size_bytes=1,
    )
    pieces = [
        Segment(recording_id, n, n * 10.0, n * 10.0 + 10, store.data_dir / f"{n}.flac")
        for n in range(len(texts))
    ]
    store.replace_segments(recording_id, pieces)
    store.set_recording_state(recording_id, "ready", duration_s=len(texts) * 10.0)
    reference = store.add_transcript(
        recording_id, engine="local", model="tiny.en", language="sv"
    )
    finish(store, reference, pieces, texts, elapsed_s=2.5)
    return recording_id


def finish(
    store: Store,
    transcript_id: str,
    pieces: list[Segment],
    texts: list[str],
    *,
    elapsed_s: float = 1.0,
    cost_usd: float = 0.0,
    state: str = "done",
) -> None:
    for piece, text in zip(pieces, texts, strict=False):
        line = {"start": piece.start_s + 1, "end": piece.end_s - 1, "text": text}
        store.save_segment_result(
            transcript_id,
            piece,
            text=text,
            lines=[line] if text else [],
            elapsed_s=elapsed_s,
            cost_usd=cost_usd,
        )
    store.set_transcript_state(transcript_id, state)


def compared(
    store: Store,
    b_texts: list[str] | None,
    *,
    state: str = "done",
    error: str | None = None,
    **stretch: float,
) -> comparison.Comparison:
    """A comparison with OpenAI whose side B said ``b_texts`` (None: nothing)."""
    recording_id = recording_with_reference(store)
    settings = Settings(data_dir=store.data_dir, openai_api_key="sk-test")
    comparison_id = comparison.start(
        store, settings, "anna", recording_id, engine="openai", **stretch
    )
    found = comparison.load(store, "anna", comparison_id)
    pieces = [
        p
        for p in store.segments(recording_id)
        if p.idx in {w.idx for w in found.windows}
    ]
    if b_texts is not None:
        finish(store, found.b.transcript_id, pieces, b_texts, cost_usd=0.001)
    if state != "done":
        store.set_transcript_state(found.b.transcript_id, state, error=error)
    return comparison.load(store, "anna", comparison_id)


def test_a_waiting_side_is_named_and_no_figure_is_shown(data: Store) -> None:
    page = comparison_views.comparison_html(compared(data, None, state="waiting"))

    assert "B (OpenAI) väntar på att transkriberas." in page
    assert "Överensstämmelsen räknas när båda sidorna är klara." in page
    assert "Ingen siffra än" in page and "överens om" not in page
    assert "Inte klart än" in page


def test_a_running_side_says_how_far_it_has_come(data: Store) -> None:
    found = compared(data, ["Vi pratade om läsning."], state="running")

    page = comparison_views.comparison_html(found)

    assert "B (OpenAI) transkriberas: 1 av 2 avsnitt klara." in page
    assert "överens om" not in page


def test_a_failed_side_shows_its_error_instead_of_a_figure(data: Store) -> None:
    found = compared(data, None, state="failed", error="Tjänsten svarade inte")

    page = comparison_views.comparison_html(found)

    assert "B (OpenAI) misslyckades: Tjänsten svarade inte." in page
    assert "Ingen överensstämmelse räknas, eftersom en sida saknas." in page
    assert "%" not in page.split("pd-notes")[0]


def test_an_empty_side_scores_zero_with_the_reason(data: Store) -> None:
    page = comparison_views.comparison_html(compared(data, ["", ""]))

    assert "överens om <b>0,0 %</b>" in page
    assert "B hittade inga ord här, därför stämmer inget överens." in page
    assert page.count("(inga ord)") == 2


def test_differences_are_marked_word_by_word_with_the_figures(data: Store) -> None:
    found = compared(data, ["vi pratar om läsning", "Eleverna läser varje dag."])

    page = comparison_views.comparison_html(found)

    # One substitution among 8 words in A: WER 12.5 %, agreement 87.5 %.
    assert "överens om <b>87,5 %</b>" in page
    assert "(WER) för B med A som facit: <b>12,5 %</b>" in page
    assert page.count("title='utbytt ord'") == 2  # once on each side
    assert "<span class='pd-w pd-sub' title='utbytt ord'>pratade</span>" in page
    assert "<span class='pd-w pd-sub' title='utbytt ord'>pratar</span>" in page
    assert "5,0 s" in page and "2,0 s" in page  # work summed over both segments
    assert "0,0020 USD" in page  # B's cost; A is local
    assert "används nu" in page


def test_a_stretch_says_which_part_is_compared(data: Store) -> None:
    found = compared(data, ["Eleverna läser varje dag."], start_s=12, end_s=15)

    page = comparison_views.comparison_html(found)

    assert "Jämförelsen gäller 0:10–0:20: de avsnitt som överlappar sträckan." in page
    assert "överens om <b>100,0 %</b>" in page
    assert "pratade" not in page  # the first segment is outside the stretch


def test_text_from_an_engine_is_escaped(data: Store) -> None:
    found = compared(data, ["<script>alert(1)</script> läsning", "x"])

    page = comparison_views.comparison_html(found)

    assert "<script>" not in page and "&lt;script&gt;" in page


def test_the_confirmation_names_the_cost_and_where_the_audio_goes(
    data: Store,
) -> None:
    recording_id = recording_with_reference(data)
    api = Settings(data_dir=data.data_dir, openai_api_key="sk-test")

    remote = comparison.plan(
        data, api, "anna", recording_id, engine="openai", start_s=3, end_s=5
    )
    local = comparison.plan(data, api, "anna", recording_id, engine="local")

    asked = comparison_views.confirmation(remote)
    assert "**Ljudet skickas till OpenAI (api.openai.com)**" in asked
    assert "Beräknad kostnad: **0,0010 USD** (0,0060 USD per minut)" in asked
    assert "1 avsnitt, 10 s ljud (0:00–0:10)" in asked
    assert "Du valde 0:03–0:05" in asked
    assert "Ljudet lämnar inte servern. Det kostar inget." in (
        comparison_views.confirmation(local)
    )


# In the real app --------------------------------------------------------------


@pytest.fixture(scope="module")
def annas_comparison(
    running_app: RunningApp, english_wav: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Anna's recording with a comparison of a stretch by the local model."""
    source = tmp_path_factory.mktemp("anna") / "annas-jamforelse.wav"
    shutil.copyfile(english_wav, source)
    with running_app.login("anna") as anna:
        tus_upload(anna, source)
    done = wait_for_transcript(None, running_app, "annas-jamforelse")
    settings = Settings(data_dir=running_app.data_dir, model="tiny.en")
    with Store(running_app.data_dir) as store:
        recording_id = str(done["recording_id"])
        comparison_id = comparison.start(
            store, settings, "anna", recording_id, engine="local", start_s=1, end_s=3
        )
        found = comparison.load(store, "anna", comparison_id)
    return {
        "recording_id": recording_id,
        "comparison_id": comparison_id,
        "a": found.a.transcript_id,
        "b": found.b.transcript_id,
    }


def test_another_user_can_neither_run_read_choose_nor_edit_a_comparison(
    running_app: RunningApp, annas_comparison: dict[str, str]
) -> None:
    # Bert sends the comparison's id himself; an error may echo it back.
    sent = annas_comparison["comparison_id"]
    secrets = set(annas_comparison.values()) - {sent} | {"annas-jamforelse", "fox"}
    before = database_state(running_app)
    answers = []
    with running_app.login("bert") as bert:
        config = bert.get("/app/config").json()
        for elem_id, event in COMPARISON_EVENTS:
            dependency = dependency_of(config, elem_id, event)
            # Anna's id in every argument, state slots included; radio buttons
            # get a valid choice so that the handler itself has to refuse.
            args = [argument(config, n, sent) for n in dependency["inputs"]]
            answers.append(call_gradio(bert, dependency, args))

    leaked = [a for a in answers if any(s in json.dumps(a) for s in secrets)]
    assert not leaked
    assert all(a.get("success") is False for a in answers), answers
    assert database_state(running_app) == before


COMPARISON_EVENTS = [
    ("pd-compare-pick", "input"),
    ("pd-compare-ask", "click"),
    ("pd-compare-yes", "click"),
    ("pd-use-a", "click"),
    ("pd-use-b", "click"),
    ("pd-compare-fill", "click"),
    ("pd-compare-save", "click"),
]


def dependency_of(config: dict[str, Any], elem_id: str, event: str) -> dict[str, Any]:
    ids = {
        c["id"] for c in config["components"] if c["props"].get("elem_id") == elem_id
    }
    for dependency in config["dependencies"]:
        if any(t[0] in ids and t[1] == event for t in dependency["targets"]):
            return dict(dependency)
    raise AssertionError(f"no {event} handler on #{elem_id}")


def argument(config: dict[str, Any], component_id: int, value: str) -> Any:
    component = next(c for c in config["components"] if c["id"] == component_id)
    if component["type"] == "radio":
        return component["props"]["choices"][0][1]
    return value


def call_gradio(
    client: httpx.Client, dependency: dict[str, Any], args: list[Any]
) -> dict[str, Any]:
    """One event through Gradio's queue, as the page sends it; the last message."""
    session = uuid.uuid4().hex[:12]
    joined = client.post(
        "/app/gradio_api/queue/join",
        json={
            "data": args,
            "event_data": None,
            "fn_index": dependency["id"],
            "trigger_id": dependency["targets"][0][0],
            "session_hash": session,
        },
    )
    if joined.status_code != 200:
        return {"success": False, "status": joined.status_code, "body": joined.text}
    with client.stream(
        "GET", f"/app/gradio_api/queue/data?session_hash={session}"
    ) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message: dict[str, Any] = json.loads(line[5:])
            if message.get("msg") == "process_completed":
                return message
    raise AssertionError("the queue closed without an answer")


def database_state(app: RunningApp) -> list[Any]:
    with sqlite3.connect(app.data_dir / "pd.sqlite3") as conn:
        return [
            conn.execute("SELECT COUNT(*) FROM transcripts").fetchone(),
            conn.execute("SELECT COUNT(*) FROM comparisons").fetchone(),
            conn.execute("SELECT chosen_transcript_id FROM recordings").fetchall(),
        ]
