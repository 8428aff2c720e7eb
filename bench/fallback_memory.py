"""What Whisper's temperature fallback costs in memory, by hypotheses sampled.

When a window decodes badly (its text compresses too well, i.e. repeats),
faster-whisper decodes it again at a higher temperature, sampling ``best_of``
hypotheses at once (default 5). This takes the one stretch of the 60-minute
loop where that happened in the memory bench (segment 48: 2857.392 s,
63.288 s long), cuts it as the pipeline does (16 kHz mono FLAC), and
transcribes it with the offline base model, int8, beam 5, two threads, once
per ``best_of`` value, each in a fresh process. The peer is ``best_of=5``,
faster-whisper's default; the figure is each process's high-water mark of
the transcription alone (reset after the model has loaded).

    python -m bench.fallback_memory --docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import corpus, ours, report
from bench.measurement import machine

BEST_OF = (1, 2, 3, 5)
START_S = 2857.392
LENGTH_S = 63.288
_CHILD = """
import json, sys, time
from pipeline import allocator
allocator.tune(512)
from faster_whisper import WhisperModel
from models.local import speech_clips
from pipeline import segments
from pathlib import Path

def kib(field):
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(status[field].split()[0])

model_dir, audio, best_of = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=2)
clips = speech_clips(segments.pauses(audio, 2.0))
open("/proc/self/clear_refs", "w").write("5")
started = time.monotonic()
pieces, _ = model.transcribe(
    str(audio), language="en", beam_size=5, best_of=best_of,
    vad_filter=False, clip_timestamps=clips,
)
pieces = list(pieces)
print(json.dumps({
    "best_of": best_of,
    "peak_mib": kib("VmHWM") / 1024,
    "seconds": time.monotonic() - started,
    "fallback": any(p.temperature > 0 for p in pieces),
}))
"""


def segment(source: Path) -> Path:
    """The stretch of the loop that falls back, cut as the pipeline cuts."""
    target = corpus.OUT_DIR / "fallback-segment.flac"
    if target.is_file():
        return target
    cmd = [
        *("ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y"),
        *("-ss", f"{START_S}", "-t", f"{LENGTH_S}", "-i", str(source)),
        *("-ac", "1", "-ar", "16000", "-c:a", "flac", str(target)),
    ]
    subprocess.run(cmd, check=True)
    return target


def measure(audio: Path, best_of: int) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(ours.base_model()),
            str(audio),
            str(best_of),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def markdown(data: dict[str, Any]) -> str:
    peer = next(r for r in data["runs"] if r["best_of"] == 5)
    rows = [
        (
            r["best_of"],
            f"{r['peak_mib']:.0f}",
            f"{r['peak_mib'] - peer['peak_mib']:+.0f}",
            f"{r['seconds']:.1f}",
            "yes" if r["fallback"] else "no",
        )
        for r in data["runs"]
    ]
    headers = ("best_of", "Peak MiB", "Against 5 MiB", "Seconds", "Fell back")
    parts = [
        "## Temperature fallback: memory by hypotheses sampled",
        f"Run {data['when']} on {report.machine_line(data['machine'])}.",
        f"```\n{data['command']}\n```",
        "One 63 s segment of the 60-minute loop whose first decoding repeats"
        " itself, so Whisper samples it again at temperature 0.2; offline base,"
        " int8, beam 5, 2 threads, pauses skipped as below 768 MB. Peak is the"
        " process's high-water mark during the transcription alone, each"
        " `best_of` in a fresh process. Below `PD_MEMORY_BUDGET_MB=768` the"
        " local engine samples 2 (`models/local.py`), which stays inside what"
        " beam search already holds.",
        report.table(headers, rows),
    ]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench.fallback_memory", description=__doc__
    )
    parser.add_argument("--source", type=Path, default=corpus.OUT_DIR / "loop-60m.mp3")
    parser.add_argument("--docs", type=Path, help="write the section into this file")
    args = parser.parse_args(argv)

    source = args.source
    if not source.is_file():
        speech = corpus.OUT_DIR / "speech-20m.mp3"
        if not speech.is_file():
            corpus.build_speech(20, corpus.OUT_DIR)
        source = corpus.build_loop(speech, 60, corpus.OUT_DIR)
    audio = segment(source)
    data = {
        "when": report.now(),
        "command": shlex.join(["python", "-m", "bench.fallback_memory", *argv]),
        "machine": machine(),
        "runs": [measure(audio, best_of) for best_of in BEST_OF],
    }
    report.publish(
        corpus.OUT_DIR / "results", "fallback-memory", data, markdown(data), args.docs
    )


if __name__ == "__main__":
    main()
