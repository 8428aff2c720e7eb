"""The OpenAI engine against real HTTP servers on loopback.

Speech goes to faster-whisper-server (tiny.en behind the OpenAI protocol);
throttling, failures and refusals come from a scripted server. The real
``openai`` client makes every request.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from models import open_engine
from models.openai_api import (
    PRICES_PER_MINUTE_USD,
    UPLOAD_LIMIT_BYTES,
    Backoff,
    OpenAIEngine,
    price_per_minute_usd,
)
from pipeline import recordings, transcript
from pipeline.config import Settings
from pipeline.errors import EngineError
from pipeline.probe import probe
from pipeline.storage import Segment, Store

if TYPE_CHECKING:
    from conftest import FakeOpenAI

KEY = "sk-test-4f9c2b7e1d-never-in-a-log"
FAST = Backoff(attempts=3, first_s=0.01, cap_s=0.05)


def seconds_of(path: Path) -> float:
    duration = probe(path).duration_s
    assert duration is not None
    return duration


def engine_for(
    url: str,
    model: str = "whisper-1",
    *,
    backoff: Backoff = FAST,
    upload_limit_bytes: int = UPLOAD_LIMIT_BYTES,
    word_timestamps: bool = False,
) -> OpenAIEngine:
    """An engine as ``from_settings`` makes one for a server of our own."""
    return OpenAIEngine(
        model=model,
        api_key=KEY,
        base_url=url,
        send_model_name=True,
        backoff=backoff,
        upload_limit_bytes=upload_limit_bytes,
        word_timestamps=word_timestamps,
    )


def openai_settings(url: str = "", key: str = KEY, **changes: Any) -> Settings:
    return dataclasses.replace(
        Settings(), engine="openai", openai_api_key=key, openai_base_url=url, **changes
    )


# Real speech, real server ---------------------------------------------------


def test_whisper_1_gives_timed_lines_with_the_spoken_words(
    whisper_server: str, spoken_flac: dict[str, Path]
) -> None:
    path = spoken_flac["school"]
    engine = OpenAIEngine.from_settings(openai_settings(whisper_server))

    result = engine.transcribe(path, "en")
    engine.close()

    words = result.text.lower()
    for word in ("lovely", "children", "school"):
        assert word in words
    duration = seconds_of(path)
    for line in result.lines:
        assert 0 <= line.start < line.end <= duration + 0.5
    assert result.cost_usd == pytest.approx(duration / 60 * 0.006, rel=1e-3)


def test_text_only_model_gives_one_line_spanning_the_segment(
    whisper_server: str, spoken_flac: dict[str, Path]
) -> None:
    path = spoken_flac["garden"]
    settings = openai_settings(whisper_server, openai_model="gpt-4o-mini-transcribe")
    engine = OpenAIEngine.from_settings(settings)

    result = engine.transcribe(path, "en")
    engine.close()

    duration = seconds_of(path)
    [line] = result.lines
    assert (line.start, line.end) == (0.0, round(duration, 3))
    assert "garden" in line.text.lower()
    assert result.cost_usd == pytest.approx(duration / 60 * 0.003, rel=1e-3)


def test_model_the_server_does_not_serve_is_refused_with_its_reason(
    whisper_server: str, spoken_flac: dict[str, Path]
) -> None:
    # The server reads ``model_name``; had the engine not sent it, the server
    # would have fallen back to its default model and answered.
    settings = openai_settings(whisper_server, openai_model="no-such-model")
    engine = OpenAIEngine.from_settings(settings)

    with pytest.raises(EngineError) as caught:
        engine.transcribe(spoken_flac["school"], "en")
    engine.close()

    assert "HTTP 400" in caught.value.message
    assert "unknown model: no-such-model" in caught.value.message


def test_reencoded_upload_is_still_understood(
    whisper_server: str, spoken_flac: dict[str, Path]
) -> None:
    path = spoken_flac["school"]
    engine = engine_for(whisper_server, upload_limit_bytes=path.stat().st_size // 2)

    result = engine.transcribe(path, "en")
    engine.close()

    assert "children" in result.text.lower()


def test_run_stores_text_times_and_cost_of_every_segment(
    whisper_server: str, spoken_flac: dict[str, Path], tmp_path: Path
) -> None:
    first, second = spoken_flac["school"], spoken_flac["garden"]
    offset, total = seconds_of(first), seconds_of(first) + seconds_of(second)
    settings = openai_settings(whisper_server, openai_concurrency=2)
    engine = open_engine(settings)
    assert isinstance(engine, OpenAIEngine)

    with Store(tmp_path / "data") as store:
        recording_id = store.add_recording(
            owner="tester",
            title="Två avsnitt",
            source_name="samtal.flac",
            source_path=first,
            fingerprint="two-segments",
            size_bytes=first.stat().st_size + second.stat().st_size,
        )
        store.replace_segments(
            recording_id,
            [
                Segment(recording_id, 0, 0.0, offset, first),
                Segment(recording_id, 1, offset, total, second),
            ],
        )
        transcript_id = store.add_transcript(
            recording_id, engine=engine.name, model=engine.model_name, language="en"
        )
        transcript.run(store, transcript_id, engine)
        engine.close()

        row = store.transcript(transcript_id)
        stored = store.segment_results(transcript_id)
        lines = transcript.lines(store, transcript_id)

    assert row["state"] == "done"
    assert row["cost_usd"] == pytest.approx(total / 60 * 0.006, rel=1e-3)
    assert [r["cost_usd"] > 0 for r in stored] == [True, True]
    assert "school" in stored[0]["text"].lower()
    assert "garden" in stored[1]["text"].lower()
    later = [line for line in lines if "garden" in line.text.lower()]
    assert later and all(offset <= line.start < line.end for line in later)


def test_segments_cut_by_ffmpeg_are_sent_and_costed_by_their_true_length(
    fake_openai: FakeOpenAI, english_wav: Path, tmp_path: Path
) -> None:
    # ffmpeg's segment muxer writes FLAC headers with no length (first piece)
    # or the running total (last piece); neither may reach the bill.
    with Store(tmp_path / "data") as store:
        recording_id = recordings.find_or_add(store, english_wav, owner="tester")
        pieces = recordings.prepare(store, recording_id, target_s=15)
    engine = engine_for(fake_openai.base_url)

    costs = [engine.transcribe(p.path, "en").cost_usd for p in pieces]

    assert len(pieces) >= 2
    assert costs == [pytest.approx(p.duration_s / 60 * 0.006, rel=1e-3) for p in pieces]


# Requests as the service sees them ------------------------------------------


def test_whisper_1_asks_for_segments_and_words(
    fake_openai: FakeOpenAI, spoken_flac: dict[str, Path]
) -> None:
    fake_openai.then(
        200,
        {
            "text": "One two. Three.",
            "segments": [
                {"id": 0, "start": 0.0, "end": 1.0, "text": " One two."},
                {"id": 1, "start": 1.2, "end": 2.0, "text": " Three."},
            ],
            "words": [
                {"start": 0.0, "end": 0.4, "word": "One"},
                {"start": 0.5, "end": 0.9, "word": "two."},
                {"start": 1.2, "end": 1.9, "word": "Three."},
            ],
        },
    )
    engine = engine_for(fake_openai.base_url, word_timestamps=True)

    result = engine.transcribe(spoken_flac["school"], "sv")
    engine.close()

    [sent] = fake_openai.received
    assert sent.fields["response_format"] == ["verbose_json"]
    assert sorted(sent.fields["timestamp_granularities[]"]) == ["segment", "word"]
    assert sent.fields["language"] == ["sv"]
    assert sent.fields["model"] == sent.fields["model_name"] == ["whisper-1"]
    assert sent.authorization == f"Bearer {KEY}"
    assert [[w.text for w in line.words] for line in result.lines] == [
        ["One", "two."],
        ["Three."],
    ]


def test_text_only_model_asks_for_plain_json(
    fake_openai: FakeOpenAI, spoken_flac: dict[str, Path]
) -> None:
    fake_openai.then(200, {"text": "Hej."})
    engine = engine_for(fake_openai.base_url, model="gpt-4o-transcribe")

    result = engine.transcribe(spoken_flac["school"], "sv")
    engine.close()

    [sent] = fake_openai.received
    assert sent.fields["response_format"] == ["json"]
    assert "timestamp_granularities[]" not in sent.fields
    assert result.text == "Hej."


def test_model_name_field_is_left_out_unless_asked_for(
    fake_openai: FakeOpenAI, spoken_flac: dict[str, Path]
) -> None:
    engine = OpenAIEngine(model="whisper-1", api_key=KEY, base_url=fake_openai.base_url)

    engine.transcribe(spoken_flac["school"], "sv")
    engine.close()

    assert "model_name" not in fake_openai.received[0].fields


def test_oversized_segment_is_sent_reencoded_under_the_limit(
    fake_openai: FakeOpenAI, spoken_flac: dict[str, Path]
) -> None:
    path = spoken_flac["school"]
    limit = path.stat().st_size // 2
    engine = engine_for(fake_openai.base_url, upload_limit_bytes=limit)

    engine.transcribe(path, "en")
    engine.close()

    [sent] = fake_openai.received
    assert sent.file_name == "school.ogg"
    assert 0 < sent.file_size <= limit


def test_segment_too_large_even_reencoded_is_refused_before_sending(
    fake_openai: FakeOpenAI, spoken_flac: dict[str, Path]
) -> None:
    engine = engine_for(fake_openai.base_url, upload_limit_bytes=100)

    with pytest.raises(EngineError, match="PD_SEGMENT_SECONDS"):
        engine.transcribe(spoken_flac["school"], "en")
    engine.close()

    assert fake_openai.received == []


def test_unreadable_segment_is_refused_before_sending(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    broken = tmp_path / "00003.flac"
    broken.write_bytes(b"fLaC" + b"\x17" * 4000)
    engine = engine_for(fake_openai.base_url)

    with pytest.raises(EngineError, match="00003.flac"):
        engine.transcribe(broken, "en")
    engine.close()

    assert fake_openai.received == []


def test_answer_of_the_wrong_shape_is_an_engine_error(
    fake_openai: FakeOpenAI, spoken_flac: dict[str, Path]
) -> None:
    fake_openai.then(200, ["not", "a", "transcription"])
    engine = engine_for(fake_openai.base_url)

    with pytest.raises(EngineError, match="oväntat svar"):
        engine.transcribe(spoken_flac["school"], "en")
    engine.close()


# Retries and refusals --------------------------------------------------------


def test_throttled_request_is_retried_until_it_succeeds(
    fake_openai: FakeOpenAI, spoken_flac: dict[str, Path]
) -> None:
    fake_openai.then_error(429, "Rate limit reached", "rate_limit_exceeded")
    fake_openai.then_error(503, "Service unavailable")
    engine = engine_for(fake_openai.base_url)

    result = engine.transcribe(spoken_flac["school"], "en")
    engine.close()

    assert len(fake_openai.received) == 3
    assert result.text == "Scripted answer."


def test_retry_after_from_the_server_is_waited_out(
    fake_openai: FakeOpenAI, spoken_flac: dict[str, Path]
) -> None:
    fake_openai.then(429, {"error": {"message": "Slow down"}}, {"retry-after": "0.3"})
    engine = engine_for(fake_openai.base_url, backoff=Backoff(3, 0.001, 1.0))

    started = time.monotonic()
    engine.transcribe(spoken_flac["school"], "en")
    engine.close()

    assert time.monotonic() - started >= 0.3


def test_server_errors_give_up_after_the_last_attempt(
    fake_openai: FakeOpenAI, spoken_flac: dict[str, Path]
) -> None:
    for _ in range(FAST.attempts):
        fake_openai.then_error(500, "The server had an error")
    engine = engine_for(fake_openai.base_url)

    with pytest.raises(EngineError) as caught:
        engine.transcribe(spoken_flac["school"], "en")
    engine.close()

    assert len(fake_openai.received) == FAST.attempts
    assert f"efter {FAST.attempts} försök" in caught.value.message
    assert "HTTP 500" in caught.value.message


def test_lost_connection_is_retried_then_reported(
    spoken_flac: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="models.openai_api")
    with socket.socket() as sock:
        # Bound but not listening: every connection is refused.
        sock.bind(("127.0.0.1", 0))
        engine = engine_for(f"http://127.0.0.1:{sock.getsockname()[1]}/v1")

        with pytest.raises(EngineError, match="ingen anslutning"):
            engine.transcribe(spoken_flac["school"], "en")
        engine.close()

    retries = [r for r in caplog.records if r.name == "models.openai_api"]
    assert len(retries) == FAST.attempts - 1


def test_wrong_key_fails_at_once_and_never_reaches_the_log(
    fake_openai: FakeOpenAI,
    spoken_flac: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_openai.then_error(429, "Rate limit reached", "rate_limit_exceeded")
    fake_openai.then(200, {"text": "Ok.", "segments": []})
    fake_openai.then_error(401, f"Incorrect API key provided: {KEY}", "invalid_api_key")
    engine = engine_for(fake_openai.base_url)

    engine.transcribe(spoken_flac["school"], "en")
    with pytest.raises(EngineError) as caught:
        engine.transcribe(spoken_flac["garden"], "en")
    engine.close()

    assert len(fake_openai.received) == 3
    assert "PD_OPENAI_API_KEY" in caught.value.message
    assert "school.flac" in caplog.text
    assert KEY not in caplog.text
    assert KEY not in "".join(traceback.format_exception(caught.value))


def test_exhausted_quota_fails_at_once_with_its_own_message(
    fake_openai: FakeOpenAI, spoken_flac: dict[str, Path]
) -> None:
    fake_openai.then_error(429, "You exceeded your quota", "insufficient_quota")
    engine = engine_for(fake_openai.base_url)

    with pytest.raises(EngineError, match="ingen kvot"):
        engine.transcribe(spoken_flac["school"], "en")
    engine.close()

    assert len(fake_openai.received) == 1


# Settings, prices and backoff ------------------------------------------------


def test_openai_without_a_key_is_refused_with_what_to_set() -> None:
    with pytest.raises(EngineError, match="PD_OPENAI_API_KEY"):
        OpenAIEngine.from_settings(openai_settings(key=""))


def test_own_server_needs_no_key(
    fake_openai: FakeOpenAI, spoken_flac: dict[str, Path]
) -> None:
    settings = openai_settings(fake_openai.base_url, key="", openai_concurrency=3)
    engine = OpenAIEngine.from_settings(settings)

    engine.transcribe(spoken_flac["school"], "en")
    engine.close()

    assert (engine.name, engine.model_name, engine.parallelism) == (
        "openai",
        "whisper-1",
        3,
    )
    assert len(fake_openai.received) == 1


def test_cost_follows_the_price_table() -> None:
    engine = OpenAIEngine(model="gpt-4o-mini-transcribe", api_key=KEY)

    assert engine.estimate_cost_usd(120) == pytest.approx(0.006)
    assert price_per_minute_usd("gpt-4o-mini-transcribe-2025-12-15") == 0.003
    assert price_per_minute_usd("gpt-4o-transcribe") == 0.006
    assert price_per_minute_usd("tiny.en") == 0.0
    assert set(PRICES_PER_MINUTE_USD) == {
        "whisper-1",
        "gpt-4o-transcribe",
        "gpt-4o-mini-transcribe",
    }
    engine.close()


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(attempts=6, first_s=1.0, cap_s=8.0)

    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0)]:
        delays = [backoff.delay(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1
    assert backoff.delay(1, retry_after_s=5.0) == 5.0
    assert backoff.delay(1, retry_after_s=60.0) == 8.0
