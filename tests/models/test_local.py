"""The local engine skips long pauses, with Silero VAD or with ffmpeg's pauses."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.local import DEFAULT_BEST_OF, TIGHT_BEST_OF, LocalEngine, speech_clips
from pipeline.config import TIGHT_BUDGET_MB, Settings
from tests.conftest import ENGLISH_SENTENCES, concat, ffmpeg, speak


@pytest.fixture(scope="module")
def speech_with_a_long_pause(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sentence, 20 s of silence, another sentence: 16 kHz mono FLAC."""
    folder = tmp_path_factory.mktemp("pause")
    first = speak(ENGLISH_SENTENCES[0], folder / "a.wav", gap_s=20.0)
    second = speak(ENGLISH_SENTENCES[1], folder / "b.wav", gap_s=1.0)
    joined = concat([first, second], folder / "joined.wav")
    target = folder / "segment.flac"
    ffmpeg(["-i", str(joined), "-c:a", "flac", str(target)])
    return target


def engine_at(budget_mb: int, data_dir: Path) -> LocalEngine:
    settings = Settings(
        data_dir=data_dir, model="tiny.en", language="en", memory_budget_mb=budget_mb
    )
    return LocalEngine.from_settings(settings)


def test_no_pause_means_one_clip_to_the_end() -> None:
    assert speech_clips([]) == [0.0]


def test_a_long_pause_is_cut_out_with_a_margin_on_each_side() -> None:
    assert speech_clips([(4.0, 26.0)]) == [0.0, 4.2, 25.8]


def test_silence_at_the_start_and_the_end_is_left_out() -> None:
    assert speech_clips([(0.0, 3.0), (10.0, None)]) == [2.8, 10.2]


def test_only_silence_leaves_nothing_to_transcribe() -> None:
    assert speech_clips([(0.0, None)]) == []


@pytest.mark.parametrize("budget_mb", [512, TIGHT_BUDGET_MB])
def test_both_ways_of_skipping_keep_the_words_and_their_true_times(
    budget_mb: int, speech_with_a_long_pause: Path, tmp_path: Path
) -> None:
    engine = engine_at(budget_mb, tmp_path)
    try:
        result = engine.transcribe(speech_with_a_long_pause, "en")
    finally:
        engine.close()

    text = result.text.lower()
    assert "fox" in text and "stella" in text
    second = next(line for line in result.lines if "stella" in line.text.lower())
    assert second.start > 20.0
    first_end = max(line.end for line in result.lines if line.start < 10.0)
    assert first_end < 6.0


def test_a_tight_budget_samples_fewer_fallback_hypotheses(tmp_path: Path) -> None:
    tight, roomy = engine_at(512, tmp_path), engine_at(TIGHT_BUDGET_MB, tmp_path)
    try:
        assert (tight.best_of, roomy.best_of) == (TIGHT_BEST_OF, DEFAULT_BEST_OF)
    finally:
        tight.close()
        roomy.close()


def test_a_silent_segment_gives_no_text(tmp_path: Path) -> None:
    silent = tmp_path / "silent.flac"
    ffmpeg(["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "30", str(silent)])
    engine = engine_at(512, tmp_path)
    try:
        result = engine.transcribe(silent, "en")
    finally:
        engine.close()

    assert result.lines == []
