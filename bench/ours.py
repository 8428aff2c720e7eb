"""Our pipeline as the benchmarks run it: the CLI in a subprocess.

Each run gets a fresh data directory (so nothing is resumed by accident)
whose ``models/whisper-base`` links to one joined copy of the offline base
model. With ``PD_LOG_LEVEL=INFO`` the CLI logs the model load, the cut and
each segment's start and finish; ``timeline`` reads those lines back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from models.weights import offline_base, offline_tiny_en

OUT_DIR = Path(__file__).resolve().parent / "out"
MODEL_HOME = OUT_DIR / "model-home"

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
_LOADED = re.compile(r"loaded model .* in ([\d.]+) s")
_CUT = re.compile(r"cut recording \S+ \(\d+ s\) into (\d+) segments")
_STARTED = re.compile(r"segment (\d+) started \(([\d.]+) s audio\)")
_FINISHED = re.compile(r"segment (\d+) transcribed in ([\d.]+) s")


def base_model() -> Path:
    """The offline base model, joined once under bench/out/model-home."""
    return offline_base(MODEL_HOME)


def fresh_data_dir(name: str) -> Path:
    """An empty data directory that shares the joined base model."""
    data_dir = OUT_DIR / "runs" / name
    shutil.rmtree(data_dir, ignore_errors=True)
    (data_dir / "models").mkdir(parents=True)
    (data_dir / "models" / "whisper-base").symlink_to(base_model())
    return data_dir


def command(
    audio: Path, data_dir: Path, output: Path, *, model: str = "base"
) -> list[str]:
    """The CLI call: English, JSON out, no progress bar."""
    return [
        *(sys.executable, "-m", "pipeline", "transcribe", str(audio)),
        *("--model", model, "--language", "en", "--format", "json"),
        *("--output", str(output), "--data-dir", str(data_dir), "--quiet"),
    ]


def environment(budget_mb: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment: the budget, INFO logging, beam 5 unless overridden."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PD_")}
    env.update(
        PD_MEMORY_BUDGET_MB=str(budget_mb),
        PD_LOG_LEVEL="INFO",
        PD_BEAM_SIZE="5",
        PD_ENGINE="local",
    )
    env.update(extra or {})
    return env


def output_text(output: Path) -> str:
    """The transcript text of a JSON export, lines joined by spaces."""
    body = json.loads(output.read_text(encoding="utf-8"))
    return " ".join(line["text"] for line in body["segments"])


def finished_segments(data_dir: Path) -> set[int]:
    """Indexes of segments stored as finished, over all transcripts."""
    db = data_dir / "pd.sqlite3"
    if not db.is_file():
        return set()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT idx FROM transcript_segments").fetchall()
    return {int(row[0]) for row in rows}


@dataclass
class Timeline:
    """When the CLI's stages ended, in seconds after its first log line."""

    load_s: float | None = None
    segments: int | None = None
    cut_at_s: float | None = None
    started: list[int] = field(default_factory=list)
    audio_s: dict[int, float] = field(default_factory=dict)
    elapsed_s: dict[int, float] = field(default_factory=dict)
    last_at_s: float = 0.0


def timeline(log_path: Path) -> Timeline:
    """Read the CLI's INFO log lines back into a ``Timeline``."""
    found = Timeline()
    first: datetime | None = None
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        stamp = _STAMP.match(line)
        if not stamp:
            continue
        at = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f")
        first = first or at
        offset = (at - first).total_seconds()
        found.last_at_s = offset
        if m := _LOADED.search(line):
            found.load_s = float(m.group(1))
        elif m := _CUT.search(line):
            found.segments, found.cut_at_s = int(m.group(1)), offset
        elif m := _STARTED.search(line):
            found.started.append(int(m.group(1)))
            found.audio_s[int(m.group(1))] = float(m.group(2))
        elif m := _FINISHED.search(line):
            found.elapsed_s[int(m.group(1))] = float(m.group(2))
    return found


def tiny_en_model() -> Path:
    """The offline tiny.en model directory (for the local OpenAI-style server)."""
    return offline_tiny_en()
