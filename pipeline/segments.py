"""Cut a recording into 16 kHz mono segments on disk, at pauses in speech.

Two streaming ffmpeg passes keep memory flat in the recording's length:

1. ``scan``: decode once, run ``silencedetect`` and measure the real duration
   (browser WebM often has none in its header).
2. ``cut``: decode again and let ffmpeg's segment muxer write FLAC pieces at
   the chosen times; its segment list gives each piece's true offset.

Cuts fall in the longest pause near the target length, so words are not
split; with no pause nearby the cut is made at the target length.
"""

from __future__ import annotations

import csv
import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError, StorageError
from pipeline.storage import DISK_FULL_MESSAGE, Segment

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
SILENCE_NOISE_DB = -35
SILENCE_MIN_S = 0.3
# A cut may move this share of the target length to reach a pause.
CUT_WINDOW = 0.25
# FLAC of 16 kHz mono speech, bytes per second, with room to spare.
FLAC_BYTES_PER_S = 32_000

Progress = Callable[[float], None]

_SILENCE_START = re.compile(r"silence_start: (-?[\d.]+)")
_SILENCE_END = re.compile(r"silence_end: (-?[\d.]+)")
_DISK_FULL = re.compile(r"No space left on device", re.IGNORECASE)
# util-linux's setpriv (in every Debian image); without it children may outlive us.
_SETPRIV = shutil.which("setpriv")


@dataclass(frozen=True)
class Scan:
    """What the first pass learned: the decoded length and the pauses."""

    duration_s: float
    silences: list[tuple[float, float]]
    decode_errors: int


def _ffmpeg_input(path: Path) -> list[str]:
    # After a kill -9 of the pipeline, an ffmpeg left running would go on
    # writing the segments that the next run writes too: setpriv has the
    # kernel kill it when the thread that started it dies.
    guard = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []
    return [
        *guard,
        *("ffmpeg", "-nostdin", "-hide_banner", "-i", str(path), "-vn", "-sn", "-dn"),
    ]


def scan(path: Path, on_progress: Progress | None = None) -> Scan:
    """Decode the whole file once, finding pauses and the true duration."""
    cmd = [
        *_ffmpeg_input(path),
        "-map",
        "0:a:0",
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        "-af",
        f"silencedetect=noise={SILENCE_NOISE_DB}dB:d={SILENCE_MIN_S}",
        "-f",
        "null",
        "-progress",
        "pipe:1",
        "-nostats",
        "-",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    pauses = _PauseLog()
    errors = [0]
    tail: list[str] = []

    def read_log() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if not pauses.feed(line) and ("rror" in line or "nvalid" in line):
                errors[0] += 1
            tail[:] = [*tail[-20:], line.rstrip()]

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    decoded_s = 0.0
    assert proc.stdout is not None
    for line in proc.stdout:
        key, _, value = line.partition("=")
        if key == "out_time_us" and value.strip().lstrip("-").isdigit():
            decoded_s = max(decoded_s, int(value) / 1e6)
            if on_progress:
                on_progress(decoded_s)
    proc.wait()
    reader.join()
    if proc.returncode != 0:
        log.info("ffmpeg scan of %s failed: %s", path, " | ".join(tail))
        raise InputError(
            f"Ljudet i '{path.name}' går inte att avkoda (filen är skadad)."
        )
    return Scan(duration_s=decoded_s, silences=pauses.closed, decode_errors=errors[0])


def pauses(path: Path, min_s: float) -> list[tuple[float, float | None]]:
    """The pauses of at least ``min_s`` in a (short) file; ``None``: to the end."""
    cmd = [
        *_ffmpeg_input(path),
        *("-map", "0:a:0", "-af"),
        f"silencedetect=noise={SILENCE_NOISE_DB}dB:d={min_s}",
        *("-f", "null", "-"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        log.info("ffmpeg pause search in %s failed: %s", path, proc.stderr[-800:])
        raise InputError(f"Avsnittet '{path.name}' går inte att avkoda.")

    found = _PauseLog()
    for line in proc.stderr.splitlines():
        found.feed(line)
    trailing = [] if found.open_start is None else [(found.open_start, None)]
    return [*found.closed, *trailing]


class _PauseLog:
    """The pauses in ffmpeg's ``silencedetect`` log, read line by line."""

    def __init__(self) -> None:
        self.closed: list[tuple[float, float]] = []
        #: Where a pause began that had not ended when the log did.
        self.open_start: float | None = None

    def feed(self, line: str) -> bool:
        """Take one log line; whether it was about a pause."""
        if m := _SILENCE_START.search(line):
            self.open_start = max(0.0, float(m.group(1)))
            return True
        if (m := _SILENCE_END.search(line)) and self.open_start is not None:
            self.closed.append((self.open_start, float(m.group(1))))
            self.open_start = None
            return True
        return False


def plan_cuts(
    duration_s: float, silences: list[tuple[float, float]], target_s: float
) -> list[float]:
    """Choose cut times: the best pause near each target, else the target itself.

    The pause is looked for within ``CUT_WINDOW`` of the target length, then
    within twice that; only with no pause in either is a word at risk.
    """
    cuts: list[float] = []
    pos = 0.0
    while duration_s - pos > target_s * (1 + CUT_WINDOW):
        aim = pos + target_s
        cut = _best_pause(silences, aim, target_s * CUT_WINDOW)
        if cut is None:
            cut = _best_pause(silences, aim, target_s * CUT_WINDOW * 2)
        cut = aim if cut is None else cut
        cuts.append(round(cut, 3))
        pos = cut
    return cuts


def _best_pause(
    silences: list[tuple[float, float]], aim: float, window: float
) -> float | None:
    best: tuple[float, float] | None = None
    for start, end in silences:
        mid = (start + end) / 2
        if abs(mid - aim) > window:
            continue
        # Long pauses first; among pauses of a similar length, the nearest.
        score = min(end - start, 2.0) - 0.01 * abs(mid - aim)
        if best is None or score > best[0]:
            best = (score, mid)
    return None if best is None else best[1]


def cut(
    path: Path,
    out_dir: Path,
    recording_id: str,
    cuts: list[float],
    duration_s: float,
) -> list[Segment]:
    """Write the segments into ``out_dir`` and return them with true offsets.

    The segments are written to a sibling ``.partial`` folder and renamed at
    the end, so a crash never leaves a half-cut set that looks complete.
    """
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    _ensure_room(out_dir.parent, duration_s)
    partial.mkdir(parents=True)

    listing = partial / "segments.csv"
    cmd = [
        *_ffmpeg_input(path),
        "-v",
        "error",
        "-map",
        "0:a:0",
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        "-c:a",
        "flac",
        "-f",
        "segment",
        "-reset_timestamps",
        "1",
        "-segment_list",
        str(listing),
        "-segment_list_type",
        "csv",
    ]
    if cuts:
        cmd += ["-segment_times", ",".join(f"{c:.3f}" for c in cuts)]
    else:
        cmd += ["-segment_time", str(int(duration_s) + 3600)]
    cmd.append(str(partial / "%05d.flac"))

    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        if _DISK_FULL.search(proc.stderr):
            raise StorageError(DISK_FULL_MESSAGE)
        log.info("ffmpeg cut of %s failed: %s", path, proc.stderr[-800:])
        raise InputError(
            f"Ljudet i '{path.name}' går inte att dela upp (filen är skadad)."
        )

    segments = _read_listing(listing, out_dir, recording_id)
    listing.unlink()
    partial.rename(out_dir)
    return segments


def _read_listing(listing: Path, out_dir: Path, recording_id: str) -> list[Segment]:
    segments = []
    with listing.open(newline="") as fh:
        for idx, (name, start, end) in enumerate(csv.reader(fh)):
            segments.append(
                Segment(
                    recording_id=recording_id,
                    idx=idx,
                    start_s=float(start),
                    end_s=float(end),
                    path=out_dir / name,
                )
            )
    return segments


def _ensure_room(folder: Path, duration_s: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    needed = int(duration_s * FLAC_BYTES_PER_S) + 50_000_000
    free = shutil.disk_usage(folder).free
    if free < needed:
        log.warning("not enough disk to cut: %d bytes free, %d needed", free, needed)
        raise StorageError(DISK_FULL_MESSAGE)
