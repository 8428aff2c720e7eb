"""What is inside a file: ffprobe's answer, translated into plain facts.

Only the container is read here; decoding happens in ``pipeline.segments``.
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaInfo:
    """The facts about a recording the pipeline needs before decoding it."""

    format_name: str
    audio_codec: str
    # Container duration; None when the container does not say (browser WebM).
    duration_s: float | None
    has_video: bool
    # The header promises more bytes than the file holds (an interrupted copy).
    truncated: bool = False


def probe(path: Path, display_name: str | None = None) -> MediaInfo:
    """Read a file's container and its first audio stream, or raise InputError."""
    name = display_name or path.name
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"Filen '{name}' går inte att läsa.") from exc
    if size == 0:
        raise InputError(f"Filen '{name}' är tom.")

    proc = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=format_name,duration:stream=codec_type,codec_name",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        log.info("ffprobe rejected %s: %s", path, proc.stderr.strip()[-500:])
        raise InputError(
            f"Filen '{name}' är inte en ljud- eller videofil som går att läsa"
            " (skadad eller okänt format)."
        )
    data = json.loads(proc.stdout or "{}")
    streams = data.get("streams", [])
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if not audio:
        raise InputError(f"Filen '{name}' innehåller inget ljudspår.")

    fmt = data.get("format", {})
    return MediaInfo(
        format_name=fmt.get("format_name", ""),
        audio_codec=audio[0].get("codec_name", ""),
        duration_s=_positive_float(fmt.get("duration")),
        has_video=any(s.get("codec_type") == "video" for s in streams),
        truncated="wav" in fmt.get("format_name", "") and _riff_short(path, size),
    )


def _riff_short(path: Path, size: int) -> bool:
    """Whether a WAV's RIFF header declares more bytes than the file has."""
    with path.open("rb") as fh:
        header = fh.read(8)
    if len(header) < 8 or header[:4] != b"RIFF":
        return False
    declared = int.from_bytes(header[4:8], "little")
    # Recorders that stream WAV write 0 or the maximum before they know the size.
    if declared in (0, 0xFFFFFFFF, 0xFFFFFFFF - 8):
        return False
    return declared + 8 > size


def _positive_float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
