"""The durable runner with the real local engine (English tiny model)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from models import Engine, SegmentText, open_engine
from pipeline import recordings, transcript
from pipeline.config import Settings
from pipeline.errors import EngineError
from pipeline.storage import Store


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    data = tmp_path_factory.mktemp("engine-data")
    return open_engine(Settings(data_dir=data, model="tiny.en", language="en"))


class CountingEngine:
    """The real engine, counting its calls and able to fail on one segment."""

    def __init__(self, inner: Engine, fail_on: str | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.model_name = inner.model_name
        self.parallelism = inner.parallelism
        self.calls: list[str] = []
        self.fail_on = fail_on

    def transcribe(self, path: Path, language: str) -> SegmentText:
        self.calls.append(path.name)
        if path.name == self.fail_on:
            raise EngineError("Avsnittet gick inte att transkribera.")
        return self.inner.transcribe(path, language)

    def estimate_cost_usd(self, audio_seconds: float) -> float:
        return 0.0

    def close(self) -> None:
        pass


def new_transcript(
    store: Store, source: Path, engine: Engine, target_s: float = 15
) -> str:
    recording_id = recordings.find_or_add(store, source, owner="tester")
    recordings.prepare(store, recording_id, target_s=target_s)
    return store.add_transcript(
        recording_id, engine=engine.name, model=engine.model_name, language="en"
    )


def test_transcript_holds_the_spoken_words_at_their_true_times(
    english_wav: Path, store: Store, tiny_engine: Engine
) -> None:
    transcript_id = new_transcript(store, english_wav, tiny_engine)
    seen: list[transcript.Progress] = []

    transcript.run(store, transcript_id, tiny_engine, on_progress=seen.append)

    lines = transcript.lines(store, transcript_id)
    text = " ".join(line.text for line in lines).lower()
    for word in ("fox", "stella", "cheese", "frog", "wednesday"):
        assert word in text
    # "Wednesday" is in the last sentence, which starts after 25 s: the
    # segment offset must have been added to the engine's relative times.
    wednesday = next(line for line in lines if "wednesday" in line.text.lower())
    assert wednesday.start > 25
    assert all(a.start <= b.start for a, b in zip(lines, lines[1:], strict=False))
    assert store.transcript(transcript_id)["state"] == "done"
    assert seen[0].segments_done == 0
    assert seen[-1].segments_done == seen[-1].segments_total >= 2
    assert seen[-1].fraction == pytest.approx(1.0)
    assert seen[-1].eta_s == pytest.approx(0.0, abs=0.01)


def test_a_resumed_transcript_never_redoes_a_finished_segment(
    english_wav: Path, store: Store, tiny_engine: Engine
) -> None:
    transcript_id = new_transcript(store, english_wav, tiny_engine)
    pieces = store.segments(store.transcript(transcript_id)["recording_id"])
    failing = CountingEngine(tiny_engine, fail_on=pieces[1].path.name)

    with pytest.raises(EngineError):
        transcript.run(store, transcript_id, failing)

    assert store.transcript(transcript_id)["state"] == "failed"
    assert store.done_segment_indexes(transcript_id) == {0}
    again = CountingEngine(tiny_engine)
    transcript.run(store, transcript_id, again)
    assert pieces[0].path.name not in again.calls
    assert sorted(again.calls) == [p.path.name for p in pieces[1:]]
    assert store.done_segment_indexes(transcript_id) == {p.idx for p in pieces}
    assert store.transcript(transcript_id)["state"] == "done"


def test_a_stop_request_keeps_finished_segments_and_leaves_it_waiting(
    english_wav: Path, store: Store, tiny_engine: Engine
) -> None:
    transcript_id = new_transcript(store, english_wav, tiny_engine, target_s=10)
    assert len(store.segments(store.transcript(transcript_id)["recording_id"])) >= 3
    stop = threading.Event()

    def stop_after_first(progress: transcript.Progress) -> None:
        if progress.segments_done >= 1:
            stop.set()

    with pytest.raises(transcript.Stopped):
        transcript.run(
            store, transcript_id, tiny_engine, on_progress=stop_after_first, stop=stop
        )

    assert store.transcript(transcript_id)["state"] == "waiting"
    assert len(store.done_segment_indexes(transcript_id)) >= 1


def test_swedish_is_transcribed_as_swedish_without_language_detection(
    swedish_wav: Path, settings: Settings
) -> None:
    # The offline base model is weak on synthetic Swedish; this checks the
    # plumbing: the language setting reaches the model and Swedish text is
    # stored, not a detected other language.
    engine = open_engine(
        Settings(data_dir=settings.data_dir, model="base", language="sv")
    )
    with Store(settings.data_dir) as store:
        recording_id = recordings.find_or_add(store, swedish_wav, owner="tester")
        recordings.prepare(store, recording_id, target_s=15)
        transcript_id = store.add_transcript(
            recording_id, engine="local", model=engine.model_name, language="sv"
        )
        transcript.run(store, transcript_id, engine)
        text = " ".join(line.text for line in transcript.lines(store, transcript_id))

    assert store_language(settings, transcript_id) == "sv"
    assert any(ch in text.lower() for ch in "åäö") or "vi" in text.lower().split()


def store_language(settings: Settings, transcript_id: str) -> str:
    with Store(settings.data_dir) as store:
        return str(store.transcript(transcript_id)["language"])
