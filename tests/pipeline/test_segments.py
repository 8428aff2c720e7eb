"""Probing and cutting real files of every common container with real ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline import probe, recordings, segments
from pipeline.errors import InputError
from pipeline.storage import Store
from tests.conftest import ffmpeg

# (suffix, ffmpeg output options); video containers get a test picture too.
AUDIO_FORMATS = [
    ("wav", []),
    ("mp3", ["-c:a", "libmp3lame", "-b:a", "64k"]),
    ("m4a", ["-c:a", "aac", "-b:a", "64k"]),
    ("flac", []),
    ("ogg", ["-c:a", "libopus", "-b:a", "32k"]),
    ("webm", ["-c:a", "libopus", "-b:a", "32k"]),
]
VIDEO_FORMATS = [
    ("mp4", ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"]),
    ("mov", ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"]),
    ("mkv", ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "libopus"]),
]


def convert(source: Path, suffix: str, options: list[str], video: bool) -> Path:
    target = source.with_name(f"{source.stem}-{'v' if video else 'a'}.{suffix}")
    picture = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10"] if video else []
    mapping = ["-map", "1:v", "-map", "0:a", "-shortest"] if video else []
    ffmpeg(["-i", str(source), *picture, *mapping, *options, str(target)])
    return target


def duration_of(path: Path) -> float:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


@pytest.mark.parametrize(
    ("suffix", "options", "video"),
    [(s, o, False) for s, o in AUDIO_FORMATS]
    + [(s, o, True) for s, o in VIDEO_FORMATS],
)
def test_every_container_is_cut_into_16k_mono_segments_covering_the_audio(
    english_wav: Path, store: Store, suffix: str, options: list[str], video: bool
) -> None:
    source = convert(english_wav, suffix, options, video)

    recording_id = recordings.find_or_add(store, source, owner="tester")
    pieces = recordings.prepare(store, recording_id, target_s=15)

    assert len(pieces) >= 2
    assert pieces[0].start_s == 0
    for earlier, later in zip(pieces, pieces[1:], strict=False):
        assert later.start_s == pytest.approx(earlier.end_s, abs=0.05)
    assert pieces[-1].end_s == pytest.approx(duration_of(english_wav), abs=0.3)
    info = probe.probe(pieces[0].path)
    assert info.audio_codec == "flac"
    stream = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=sample_rate,channels",
            "-of",
            "csv=p=0",
            str(pieces[0].path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert stream == "16000,1"
    assert store.recording(recording_id)["state"] == "ready"


def test_cuts_fall_in_pauses_not_inside_words(english_wav: Path) -> None:
    scan = segments.scan(english_wav)

    cuts = segments.plan_cuts(scan.duration_s, scan.silences, target_s=10)

    assert cuts
    for cut in cuts:
        assert any(start <= cut <= end for start, end in scan.silences), cut


def test_without_pauses_cuts_fall_at_the_target_length() -> None:
    cuts = segments.plan_cuts(100.0, [], target_s=30)

    assert cuts == [30.0, 60.0, 90.0]


def test_a_recording_with_a_missing_duration_header_is_measured_by_decoding(
    english_wav: Path, tmp_path: Path
) -> None:
    # Browsers' MediaRecorder writes WebM without a duration; piping mimics it.
    target = tmp_path / "browser.webm"
    with target.open("wb") as out:
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-i",
                str(english_wav),
                "-c:a",
                "libopus",
                "-f",
                "webm",
                "-live",
                "1",
                "pipe:1",
            ],
            stdout=out,
            check=True,
        )

    scan = segments.scan(target)

    assert scan.duration_s == pytest.approx(duration_of(english_wav), abs=0.2)


def make_bad_inputs(folder: Path, english_wav: Path) -> dict[str, Path]:
    text = folder / "notes.mp3"
    text.write_text("Det här är inte ljud, bara text.\n" * 50)
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    silent_video = folder / "video-only.mp4"
    ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=10:duration=3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            str(silent_video),
        ]
    )
    truncated = folder / "truncated.wav"
    data = english_wav.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    truncated_m4a = folder / "truncated.m4a"
    full_m4a = convert(english_wav, "m4a", ["-c:a", "aac"], video=False)
    whole = full_m4a.read_bytes()
    truncated_m4a.write_bytes(whole[: len(whole) // 2])
    return {
        "text": text,
        "empty": empty,
        "video-only": silent_video,
        "truncated-wav": truncated,
        "truncated-m4a": truncated_m4a,
    }


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("text", "inte en ljud- eller videofil"),
        ("empty", "är tom"),
        ("video-only", "inget ljudspår"),
        ("truncated-wav", "avkortad"),
        ("truncated-m4a", "'truncated.m4a'"),
    ],
)
def test_bad_input_fails_with_a_swedish_message_and_leaves_no_segments(
    english_wav: Path, store: Store, tmp_path: Path, kind: str, words: str
) -> None:
    source = make_bad_inputs(tmp_path, english_wav)[kind]
    recording_id = recordings.find_or_add(store, source, owner="tester")

    with pytest.raises(InputError) as caught:
        recordings.prepare(store, recording_id, target_s=15)

    assert words in caught.value.message
    assert store.recording(recording_id)["state"] == "failed"
    assert store.recording(recording_id)["error"] == caught.value.message
    assert store.segments(recording_id) == []
    folder = store.recording_dir(recording_id)
    assert not (folder / "segments").exists()
    assert not (folder / "segments.partial").exists()


def test_a_missing_file_is_named_in_the_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="finns inte"):
        recordings.find_or_add(store, tmp_path / "gone.wav", owner="tester")


def test_the_same_file_twice_is_the_same_recording(
    english_wav: Path, store: Store
) -> None:
    first = recordings.find_or_add(store, english_wav, owner="tester")
    second = recordings.find_or_add(store, english_wav, owner="tester")
    other_owner = recordings.find_or_add(store, english_wav, owner="someone-else")

    assert first == second
    assert other_owner != first
