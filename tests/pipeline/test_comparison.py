"""Comparisons with real engines, a real database and real segments.

Side A is always a real transcript by a real Whisper model. Side B is the
real local model, faster-whisper-server or the scripted OpenAI-compatible
server, all on loopback. The reference transcript (tiny.en) is made once per
module and copied to each test's own recording, so the tests stay quick.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jiwer
import pytest

from models import open_engine
from models.openai_api import Backoff, OpenAIEngine
from pipeline import comparison, edits, exports, recordings, transcript
from pipeline.config import Settings
from pipeline.errors import EngineError, InputError, NotFoundError
from pipeline.storage import Store
from pipeline.worker import Worker
from tests.models import conftest as model_fixtures
from tests.models.conftest import FakeOpenAI

# The loopback servers of the engine tests, shared with this module.
whisper_server = model_fixtures.whisper_server
_fake_openai_server = model_fixtures._fake_openai_server
fake_openai = model_fixtures.fake_openai

JIWER_WORDS = jiwer.Compose(
    [
        jiwer.ToLowerCase(),
        jiwer.RemovePunctuation(),
        jiwer.RemoveMultipleSpaces(),
        jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ]
)


@dataclasses.dataclass
class Place:
    """The module's database, and the reference transcript to copy from."""

    store: Store
    settings: Settings
    template: str
    source: Path


@pytest.fixture(scope="module")
def place(
    tmp_path_factory: pytest.TempPathFactory, english_wav: Path
) -> Iterator[Place]:
    data = tmp_path_factory.mktemp("comparisons") / "data"
    settings = Settings(
        data_dir=data, model="tiny.en", language="en", segment_seconds=15.0
    )
    engine = open_engine(settings)
    with Store(data) as store:
        recording_id = recordings.find_or_add(store, english_wav, owner="template")
        recordings.prepare(store, recording_id, target_s=15)
        template = store.add_transcript(
            recording_id, engine="local", model="tiny.en", language="en"
        )
        transcript.run(store, template, engine)
        engine.close()
        yield Place(store, settings, template, english_wav)


def recording_of(place: Place, owner: str) -> str:
    """``owner``'s own recording of the speech, with the reference copied in."""
    store = place.store
    recording_id = recordings.find_or_add(store, place.source, owner=owner)
    pieces = recordings.prepare(store, recording_id, target_s=15)
    reference = store.add_transcript(
        recording_id, engine="local", model="tiny.en", language="en"
    )
    for result in store.segment_results(place.template):
        piece = next(p for p in pieces if p.idx == result["idx"])
        store.save_segment_result(
            reference,
            piece,
            text=result["text"],
            lines=result["lines"],
            elapsed_s=result["elapsed_s"],
        )
    store.set_transcript_state(reference, "done")
    return recording_id


def api_settings(place: Place, base_url: str) -> Settings:
    return dataclasses.replace(place.settings, openai_base_url=base_url)


def api_engine(base_url: str) -> OpenAIEngine:
    # One request at a time, so scripted answers meet the segments in order.
    return OpenAIEngine(
        model="whisper-1",
        api_key="test-key",
        base_url=base_url,
        parallelism=1,
        backoff=Backoff(attempts=1),
    )


def run_other_side(place: Place, owner: str, comparison_id: str, base_url: str) -> None:
    other = comparison.load(place.store, owner, comparison_id).b.transcript_id
    engine = api_engine(base_url)
    try:
        transcript.run(place.store, other, engine)
    finally:
        engine.close()


def answer(text: str, seconds: float = 2.0) -> dict[str, Any]:
    """A verbose_json body saying ``text`` in one timed segment."""
    segments = [{"id": 0, "start": 0.0, "end": seconds, "text": f" {text}"}]
    return {
        "task": "transcribe",
        "language": "en",
        "duration": seconds,
        "text": f" {text}",
        "segments": segments if text else [],
    }


def window_texts(db: Path, transcript_id: str) -> dict[int, str]:
    """Straight from the database: each stored segment's text by index."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT idx, text FROM transcript_segments WHERE transcript_id = ?",
            (transcript_id,),
        ).fetchall()
    return {idx: text for idx, text in rows}


def test_local_model_against_an_api_server_agrees_as_jiwer_counts_it(
    settings: Settings, english_wav: Path, whisper_server: str
) -> None:
    # Two different real models: the offline base locally, tiny.en behind
    # faster-whisper-server, so the sides really differ.
    settings = dataclasses.replace(
        settings, model="base", openai_base_url=whisper_server
    )
    with Store(settings.data_dir) as store:
        worker = Worker(store, settings)
        recording_id = recordings.find_or_add(store, english_wav, owner="anna")
        store.add_transcript(recording_id, engine="local", model="base", language="en")
        worker.start()
        try:
            wait_until_done(store, recording_id, count=1)
            planned = comparison.plan(
                store, settings, "anna", recording_id, engine="openai"
            )
            comparison_id = comparison.start(
                store, settings, "anna", recording_id, engine="openai"
            )
            worker.wake()
            wait_until_done(store, recording_id, count=2)
        finally:
            worker.stop()
        found = comparison.load(store, "anna", comparison_id)

    db = settings.data_dir / "pd.sqlite3"
    a_texts = window_texts(db, found.a.transcript_id)
    b_texts = window_texts(db, found.b.transcript_id)
    assert sorted(a_texts) == sorted(b_texts) == [w.idx for w in found.windows]
    expected = jiwer.process_words(
        [a_texts[i] for i in sorted(a_texts)],
        [b_texts[i] for i in sorted(a_texts)],
        reference_transform=JIWER_WORDS,
        hypothesis_transform=JIWER_WORDS,
    )
    errors = expected.substitutions + expected.deletions + expected.insertions
    longer = sum(
        max(len(JIWER_WORDS(a_texts[i])[0]), len(JIWER_WORDS(b_texts[i])[0]))
        for i in a_texts
    )
    assert found.score is not None and found.score.ref_words > 40
    assert found.score.errors == errors
    assert found.score.wer == pytest.approx(expected.wer)
    assert found.score.agreement == pytest.approx(1 - errors / longer)
    assert found.score.agreement > 0.5
    assert (found.a.engine, found.a.model) == ("local", "base")
    assert (found.b.engine, found.b.model) == ("openai", "whisper-1")
    assert found.a.work_s > 0 and found.b.work_s > 0
    assert found.b.cost_usd == pytest.approx(planned.estimated_cost_usd)
    assert planned.estimated_cost_usd == pytest.approx(
        planned.audio_s / 60 * 0.006, abs=1e-5
    )


def wait_until_done(store: Store, recording_id: str, count: int) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        rows = store.query(
            "SELECT state, error FROM transcripts WHERE recording_id = ?",
            (recording_id,),
        )
        failed = [r["error"] for r in rows if r["state"] == "failed"]
        assert not failed, failed
        if len(rows) >= count and all(r["state"] == "done" for r in rows):
            return
        time.sleep(0.3)
    raise AssertionError("the transcripts were not done in time")


def test_a_stretch_is_run_and_compared_on_the_segments_overlapping_it(
    place: Place, fake_openai: FakeOpenAI
) -> None:
    recording_id = recording_of(place, "stretch")
    settings = api_settings(place, fake_openai.base_url)
    pieces = place.store.segments(recording_id)
    inside = pieces[-1]
    stretch = {"start_s": inside.start_s + 1, "end_s": inside.start_s + 4}
    reference = window_texts(place.store.data_dir / "pd.sqlite3", place.template)
    # B says what A said in that segment, with its first word changed.
    changed = ["zebra", *reference[inside.idx].split()[1:]]
    fake_openai.then(200, answer(" ".join(changed)))

    planned = comparison.plan(
        place.store, settings, "stretch", recording_id, engine="openai", **stretch
    )
    comparison_id = comparison.start(
        place.store, settings, "stretch", recording_id, engine="openai", **stretch
    )
    run_other_side(place, "stretch", comparison_id, fake_openai.base_url)
    found = comparison.load(place.store, "stretch", comparison_id)

    assert [w.idx for w in planned.windows] == [inside.idx]
    assert len(fake_openai.received) == 1
    assert [w.idx for w in found.windows] == [inside.idx]
    assert list(found.a.windows) == list(found.b.windows) == [inside.idx]
    assert (found.covered_start_s, found.covered_end_s) == (
        inside.start_s,
        inside.end_s,
    )
    words = len(JIWER_WORDS(reference[inside.idx])[0])
    assert found.score is not None
    assert (found.score.errors, found.score.ref_words) == (1, words)
    assert found.score.wer == pytest.approx(1 / words)
    assert found.b.cost_usd == pytest.approx(planned.estimated_cost_usd)
    assert planned.estimated_cost_usd == pytest.approx(
        inside.duration_s / 60 * 0.006, abs=1e-6
    )
    row = found.rows[0]
    assert row.b is not None and row.b[0].tokens[0].mark == "sub"


def test_a_side_still_waiting_gives_no_figure(
    place: Place, fake_openai: FakeOpenAI
) -> None:
    recording_id = recording_of(place, "waiting")
    settings = api_settings(place, fake_openai.base_url)

    comparison_id = comparison.start(
        place.store, settings, "waiting", recording_id, engine="openai"
    )
    found = comparison.load(place.store, "waiting", comparison_id)

    assert (found.a.state, found.b.state) == ("done", "waiting")
    assert found.score is None and found.scored_windows == 0
    assert all(row.a is not None and row.b is None for row in found.rows)
    first = found.rows[0].a
    assert first is not None and all(token.mark == "" for token in first[0].tokens)


def test_a_failed_side_keeps_its_error_and_gives_no_figure(
    place: Place, fake_openai: FakeOpenAI
) -> None:
    recording_id = recording_of(place, "failed")
    settings = api_settings(place, fake_openai.base_url)
    fake_openai.then_error(401, "Incorrect API key provided")
    comparison_id = comparison.start(
        place.store, settings, "failed", recording_id, engine="openai"
    )

    with pytest.raises(EngineError):
        run_other_side(place, "failed", comparison_id, fake_openai.base_url)
    found = comparison.load(place.store, "failed", comparison_id)

    assert found.b.state == "failed"
    assert "API-nyckeln" in found.b.error
    assert found.score is None


def test_asking_again_reuses_the_comparison_and_requeues_a_failed_one(
    place: Place, fake_openai: FakeOpenAI
) -> None:
    recording_id = recording_of(place, "again")
    settings = api_settings(place, fake_openai.base_url)
    first = comparison.start(
        place.store, settings, "again", recording_id, engine="openai"
    )
    other = comparison.load(place.store, "again", first).b.transcript_id
    place.store.set_transcript_state(other, "failed", error="nere")

    again = comparison.start(
        place.store, settings, "again", recording_id, engine="openai"
    )

    assert again == first
    assert place.store.transcript(other)["state"] == "waiting"
    assert len(comparison.comparisons_of(place.store, "again", recording_id)) == 1


def test_an_empty_side_is_scored_as_saying_nothing(
    place: Place, fake_openai: FakeOpenAI
) -> None:
    recording_id = recording_of(place, "empty")
    settings = api_settings(place, fake_openai.base_url)
    for _ in place.store.segments(recording_id):
        fake_openai.then(200, answer(""))
    comparison_id = comparison.start(
        place.store, settings, "empty", recording_id, engine="openai"
    )

    run_other_side(place, "empty", comparison_id, fake_openai.base_url)
    found = comparison.load(place.store, "empty", comparison_id)

    assert found.b.state == "done" and found.score is not None
    assert found.score.hyp_words == 0 and found.score.ref_words > 40
    assert (found.score.wer, found.score.agreement) == (1.0, 0.0)


def test_choosing_b_makes_it_the_transcript_of_the_view_and_the_exports(
    place: Place, fake_openai: FakeOpenAI
) -> None:
    recording_id = recording_of(place, "choose")
    settings = api_settings(place, fake_openai.base_url)
    comparison_id = comparison.start(
        place.store, settings, "choose", recording_id, engine="openai"
    )
    run_other_side(place, "choose", comparison_id, fake_openai.base_url)
    found = comparison.load(place.store, "choose", comparison_id)
    assert found.current == "a"

    chosen = edits.choose(place.store, "choose", comparison_id, "b")

    row = place.store.recordings_of("choose")[0]
    assert chosen == row["transcript_id"] == found.b.transcript_id
    text = exports.render("txt", transcript.lines(place.store, chosen))
    assert "Scripted answer." in text and "fox" not in text.lower()
    assert comparison.load(place.store, "choose", comparison_id).current == "b"
    edits.choose(place.store, "choose", comparison_id, "a")
    assert place.store.recordings_of("choose")[0]["transcript_id"] == (
        found.a.transcript_id
    )


def test_a_waiting_side_cannot_be_chosen(place: Place, fake_openai: FakeOpenAI) -> None:
    recording_id = recording_of(place, "too-early")
    settings = api_settings(place, fake_openai.base_url)
    comparison_id = comparison.start(
        place.store, settings, "too-early", recording_id, engine="openai"
    )

    with pytest.raises(InputError, match="inte klar"):
        edits.choose(place.store, "too-early", comparison_id, "b")


def test_choosing_b_of_a_stretch_merges_it_into_a(
    place: Place, fake_openai: FakeOpenAI
) -> None:
    recording_id = recording_of(place, "merge")
    settings = api_settings(place, fake_openai.base_url)
    first, last = (
        place.store.segments(recording_id)[0],
        place.store.segments(recording_id)[-1],
    )
    fake_openai.then(200, answer("Only this was said here."))
    comparison_id = comparison.start(
        place.store,
        settings,
        "merge",
        recording_id,
        engine="openai",
        start_s=last.start_s + 1,
        end_s=last.end_s,
    )
    run_other_side(place, "merge", comparison_id, fake_openai.base_url)

    merged = edits.choose(place.store, "merge", comparison_id, "b")

    row = place.store.transcript(merged)
    assert (row["engine"], row["model"], row["state"]) == (
        "edited",
        "sammanfogad",
        "done",
    )
    assert place.store.recordings_of("merge")[0]["transcript_id"] == merged
    texts = window_texts(place.store.data_dir / "pd.sqlite3", merged)
    reference = window_texts(place.store.data_dir / "pd.sqlite3", place.template)
    assert texts[first.idx] == reference[first.idx]
    assert texts[last.idx] == "Only this was said here."


def test_edited_text_is_saved_with_its_times_and_becomes_the_transcript(
    place: Place, fake_openai: FakeOpenAI
) -> None:
    recording_id = recording_of(place, "edit")
    settings = api_settings(place, fake_openai.base_url)
    comparison_id = comparison.start(
        place.store, settings, "edit", recording_id, engine="openai"
    )
    original = transcript.lines(place.store, place.template)

    text = edits.merged_text(place.store, "edit", comparison_id, "a")
    first, *rest = text.splitlines()
    edited = "\n".join([first + " Tillagt av läraren.", *rest, "", "  "])
    saved = edits.save_edited(place.store, "edit", comparison_id, edited)

    assert place.store.recordings_of("edit")[0]["transcript_id"] == saved
    lines = transcript.lines(place.store, saved)
    assert len(lines) == len(original)
    assert lines[0].text.endswith("Tillagt av läraren.")
    assert lines[0].start == pytest.approx(original[0].start, abs=0.051)
    assert [line.end for line in lines] == [line.end for line in original]
    assert "Tillagt av läraren." in exports.render("srt", lines)
    with pytest.raises(InputError, match="tom"):
        edits.save_edited(place.store, "edit", comparison_id, "\n  \n")


def test_edited_lines_without_a_known_start_end_where_the_next_begins() -> None:
    lines = edits.parse(
        "[0:00:01.0] Hej\nfortsättning\n[0:03.5] Nästa\n[1:00:00] Sist", [], 3700.0
    )

    assert [(line.start, line.end, line.text) for line in lines] == [
        (1.0, 3.5, "Hej fortsättning"),
        (3.5, 3600.0, "Nästa"),
        (3600.0, 3700.0, "Sist"),
    ]


def test_another_user_can_neither_run_read_choose_nor_edit_a_comparison(
    place: Place, fake_openai: FakeOpenAI
) -> None:
    recording_id = recording_of(place, "owner")
    settings = api_settings(place, fake_openai.base_url)
    comparison_id = comparison.start(
        place.store, settings, "owner", recording_id, engine="openai"
    )
    before = place.store.query("SELECT COUNT(*) AS n FROM transcripts")[0]["n"]
    attempts = [
        lambda: comparison.plan(
            place.store, settings, "intruder", recording_id, engine="openai"
        ),
        lambda: comparison.start(
            place.store, settings, "intruder", recording_id, engine="local"
        ),
        lambda: comparison.comparisons_of(place.store, "intruder", recording_id),
        lambda: comparison.load(place.store, "intruder", comparison_id),
        lambda: edits.choose(place.store, "intruder", comparison_id, "a"),
        lambda: edits.merged_text(place.store, "intruder", comparison_id, "a"),
        lambda: edits.save_edited(place.store, "intruder", comparison_id, "[0:00] x"),
    ]

    for attempt in attempts:
        with pytest.raises(NotFoundError):
            attempt()

    assert place.store.query("SELECT COUNT(*) AS n FROM transcripts")[0]["n"] == before
    assert place.store.recording(recording_id)["chosen_transcript_id"] is None


def test_a_stretch_outside_the_recording_or_backwards_is_refused(
    place: Place, fake_openai: FakeOpenAI
) -> None:
    recording_id = recording_of(place, "limits")
    settings = api_settings(place, fake_openai.base_url)

    def planned(**stretch: float) -> comparison.Plan:
        return comparison.plan(
            place.store, settings, "limits", recording_id, engine="openai", **stretch
        )

    with pytest.raises(InputError, match="efter inspelningens slut"):
        planned(start_s=3600)
    with pytest.raises(InputError, match="sluta efter"):
        planned(start_s=10, end_s=5)
    assert planned(start_s=0, end_s=10_000).start_s is None  # all of it
    assert planned().destination == "127.0.0.1"
    with pytest.raises(EngineError, match="PD_OPENAI_API_KEY"):
        comparison.plan(
            place.store, place.settings, "limits", recording_id, engine="openai"
        )
    assert comparison.parse_clock("1:02:03,5") == pytest.approx(3723.5)
    assert comparison.parse_clock(" 90 ") == 90 and comparison.parse_clock("") is None
    with pytest.raises(InputError, match="ingen tid"):
        comparison.parse_clock("halv tre")


def test_no_new_run_once_the_audio_is_deleted(place: Place) -> None:
    recording_id = recording_of(place, "deleted-audio")
    with place.store.transaction() as conn:
        conn.execute(
            "UPDATE recordings SET audio_deleted_at = ? WHERE id = ?",
            (time.time(), recording_id),
        )

    with pytest.raises(InputError, match="raderats"):
        comparison.plan(
            place.store, place.settings, "deleted-audio", recording_id, engine="local"
        )


def test_a_comparison_goes_with_its_recording(
    place: Place, fake_openai: FakeOpenAI
) -> None:
    recording_id = recording_of(place, "gone")
    settings = api_settings(place, fake_openai.base_url)
    comparison_id = comparison.start(
        place.store, settings, "gone", recording_id, engine="openai"
    )

    place.store.delete_recording(recording_id)

    assert (
        place.store.query("SELECT * FROM comparisons WHERE id = ?", (comparison_id,))
        == []
    )


def test_a_database_from_before_comparisons_gains_what_they_need(
    tmp_path: Path,
) -> None:
    with sqlite3.connect(tmp_path / "pd.sqlite3") as conn:
        conn.executescript(OLD_SCHEMA)
        conn.execute(
            "INSERT INTO recordings VALUES ('r1', 'anna', 'Gammal', 'a.wav', '/a.wav',"
            " 'fp', 10, 5.0, 'ready', NULL, NULL, 1.0, 1.0)"
        )
        conn.execute(
            "INSERT INTO transcripts VALUES ('t1', 'r1', 'local', 'base', 'sv',"
            " 'done', NULL, 0, 2.0, 2.0, 3.0)"
        )

    with Store(tmp_path) as store:
        columns = {
            table: {r["name"] for r in store.query(f"PRAGMA table_info({table})")}
            for table in ("recordings", "transcripts")
        }
        listed = store.recordings_of("anna")

    assert {"start_s", "end_s"} <= columns["transcripts"]
    assert "chosen_transcript_id" in columns["recordings"]
    assert [(r["title"], r["transcript_id"]) for r in listed] == [("Gammal", "t1")]
    with Store(tmp_path) as reopened:  # a second opening changes nothing
        assert reopened.recordings_of("anna")[0]["transcript_id"] == "t1"


# The two tables as the first release made them.
OLD_SCHEMA = """
CREATE TABLE recordings (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, title TEXT NOT NULL,
    source_name TEXT NOT NULL, source_path TEXT NOT NULL, fingerprint TEXT NOT NULL,
    size_bytes INTEGER NOT NULL, duration_s REAL, state TEXT NOT NULL, error TEXT,
    audio_deleted_at REAL, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE transcripts (
    id TEXT PRIMARY KEY,
    recording_id TEXT NOT NULL REFERENCES recordings(id) ON DELETE CASCADE,
    engine TEXT NOT NULL, model TEXT NOT NULL, language TEXT NOT NULL,
    state TEXT NOT NULL, error TEXT, cost_usd REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL
);
"""
