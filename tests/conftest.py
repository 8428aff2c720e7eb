"""Shared fixtures: real speech made with espeak-ng, real ffmpeg, real models."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.storage import Store

# Sentences whose words the tests look for; espeak-ng says them with pauses.
ENGLISH_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things from the store.",
    "Six spoons of fresh snow peas and five thick slabs of blue cheese.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags.",
    "And we will go meet her on Wednesday at the train station.",
]
SWEDISH_SENTENCES = [
    "Vi pratade om hur eleverna lär sig läsa.",
    "Läraren berättade om klassens arbete med matematik.",
]


def speak(text: str, target: Path, voice: str = "en-us", gap_s: float = 0.0) -> Path:
    """Synthesize ``text`` into a WAV file, optionally followed by silence."""
    raw = target.with_suffix(".raw.wav")
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True
    )
    filters = ["-af", f"apad=pad_dur={gap_s}"] if gap_s else []
    ffmpeg(["-i", str(raw), *filters, "-ar", "16000", "-ac", "1", str(target)])
    raw.unlink()
    return target


def ffmpeg(args: list[str]) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", *args],
        check=True,
        capture_output=True,
    )


def concat(parts: list[Path], target: Path) -> Path:
    listing = target.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    ffmpeg(
        ["-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(target)]
    )
    listing.unlink()
    return target


@pytest.fixture(scope="session")
def english_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 40 s of English: six sentences, each followed by a 1.5 s pause."""
    folder = tmp_path_factory.mktemp("english")
    parts = [
        speak(sentence, folder / f"s{n}.wav", gap_s=1.5)
        for n, sentence in enumerate(ENGLISH_SENTENCES)
    ]
    return concat(parts, folder / "english.wav")


@pytest.fixture(scope="session")
def swedish_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("swedish")
    parts = [
        speak(sentence, folder / f"s{n}.wav", voice="sv", gap_s=1.0)
        for n, sentence in enumerate(SWEDISH_SENTENCES)
    ]
    return concat(parts, folder / "swedish.wav")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory shared by tests so the base model is joined only once."""
    folder = tmp_path_factory.mktemp("shared-data")
    (folder / "models" / "whisper-base").mkdir(parents=True)
    return folder


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    """Fast settings for tests: the English tiny model, short segments."""
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    (data / "models" / "whisper-base").symlink_to(
        models_dir / "models" / "whisper-base", target_is_directory=True
    )
    return dataclasses.replace(
        Settings(),
        data_dir=data,
        model="tiny.en",
        language="en",
        segment_seconds=15.0,
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with Store(settings.data_dir) as opened:
        yield opened


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 24 MB file system (tmpfs), so a full disk is really full."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill_disk(folder: Path) -> Path:
    """Write zeros until the file system is full; the filler's path."""
    filler = folder / "filler.bin"
    block = b"\0" * (1 << 20)
    with filler.open("wb") as out:
        try:
            while True:
                out.write(block)
                out.flush()
        except OSError:
            pass
    return filler
