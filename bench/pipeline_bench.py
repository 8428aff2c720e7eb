"""Throughput, memory and accuracy of our pipeline against faster-whisper's own.

On one recording, in one run, each system in its own fresh process, in turn:

- ``ours-2048`` / ``ours-512``: ``python -m pipeline transcribe`` at
  ``PD_MEMORY_BUDGET_MB`` 2048 (two segments in flight on two cores) and 512
  (one);
- ``whole``: ``WhisperModel.transcribe()`` on the whole file;
- ``batched-8`` / ``batched-4``: ``BatchedInferencePipeline``, batch 8 and 4.

Same offline base model, int8, beam 5, English, all cores. Reported: real-time
factor (audio seconds per wall second, process start to exit), peak RSS of
the whole process tree, WER against the corpus reference, and the ratios the
issue sets targets for. ``--variant`` adds runs of our CLI with other
``PD_*`` settings, for diagnosis.

    python -m bench.pipeline_bench --repeats 3 --docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import corpus, ours, report
from bench.measurement import machine, run_measured
from bench.wer import word_error_rate

log = logging.getLogger(__name__)

DEFAULT_AUDIO = corpus.OUT_DIR / "speech-20m.mp3"
THROUGHPUT_TARGET = 1.0
WER_TARGET_POINTS = 1.0


@dataclass(frozen=True)
class System:
    """One contender: our CLI with some environment, or a faster-whisper peer."""

    name: str
    kind: str  # "ours", "whole" or "batched"
    settings: str
    env: dict[str, str] = field(default_factory=dict)
    budget_mb: int = 2048
    batch_size: int = 8


SYSTEMS = {
    "ours-2048": System("ours-2048", "ours", "CLI, budget 2048 MB", budget_mb=2048),
    "ours-512": System("ours-512", "ours", "CLI, budget 512 MB", budget_mb=512),
    "whole": System("whole", "whole", "transcribe() on the whole file"),
    "batched-8": System("batched-8", "batched", "batch 8", batch_size=8),
    "batched-4": System("batched-4", "batched", "batch 4", batch_size=4),
}


def parse_variant(spec: str) -> System:
    """``NAME:KEY=VALUE,KEY=VALUE`` → a run of our CLI with those settings."""
    name, _, assignments = spec.partition(":")
    env = dict(item.split("=", 1) for item in assignments.split(",") if item)
    budget = int(env.pop("PD_MEMORY_BUDGET_MB", "2048"))
    label = f"CLI, budget {budget} MB, " + ", ".join(f"{k}={v}" for k, v in env.items())
    return System(name, "ours", label, env=env, budget_mb=budget)


def audio_seconds(audio: Path) -> float:
    cmd = ["ffprobe", "-v", "error", "-show_entries", "format=duration"]
    out = subprocess.run(
        [*cmd, "-of", "csv=p=0", str(audio)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def run_one(
    system: System, audio: Path, tag: str, threads: int, timeout_s: float
) -> dict[str, Any]:
    """Run one system once in a fresh process; its figures and its text."""
    run_dir = ours.OUT_DIR / "runs" / tag
    if system.kind == "ours":
        data_dir = ours.fresh_data_dir(tag)
        output = data_dir / "transcript.json"
        cmd = ours.command(audio, data_dir, output)
        env = ours.environment(system.budget_mb, system.env)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        output = run_dir / "result.json"
        cmd = [
            *(sys.executable, "-m", "bench.peers", system.kind, str(audio)),
            *("--model", str(ours.base_model()), "--result", str(output)),
            *("--batch-size", str(system.batch_size), "--threads", str(threads)),
        ]
        env = dict(os.environ)
    log_path = run_dir / "run.log"

    log.info("running %s: %s", tag, shlex.join(cmd))
    measured = run_measured(cmd, env=env, log_path=log_path, timeout_s=timeout_s)
    if measured.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{tag} exited {measured.returncode}:\n{tail}")

    result: dict[str, Any] = {"system": system.name, **measured.to_dict()}
    if system.kind == "ours":
        result["text"] = ours.output_text(output)
        result["timeline"] = vars(ours.timeline(log_path))
    else:
        peer = json.loads(output.read_text())
        result["text"] = peer.pop("text")
        result["peer"] = peer
    return result


def summarise(
    runs: list[dict[str, Any]], systems: list[System], audio_s: float, ref: str
) -> dict[str, dict[str, float]]:
    """Median figures per system over its repeats."""
    summary = {}
    for system in systems:
        mine = [r for r in runs if r["system"] == system.name]
        for r in mine:
            r["rtf"] = audio_s / r["wall_s"]
            r["wer"] = word_error_rate(ref, r["text"])
        summary[system.name] = {
            "rtf": report.median([r["rtf"] for r in mine]),
            "wall_s": report.median([r["wall_s"] for r in mine]),
            "peak_rss_mb": report.median([r["peak_rss_mb"] for r in mine]),
            "hwm_sum_mb": report.median([r["hwm_sum_mb"] for r in mine]),
            "cpu_s": report.median([r["cpu_s"] for r in mine]),
            "others_cores": report.median([r["others_cores"] for r in mine]),
            "wer": report.median([r["wer"] for r in mine]),
            "runs": len(mine),
        }
    return summary


def segment_profile(runs: list[dict[str, Any]], name: str) -> str:
    """Where our CLI's wall time went, from its INFO log (median run)."""
    mine = sorted((r for r in runs if r["system"] == name), key=lambda r: r["wall_s"])
    if not mine:
        return ""
    run = mine[len(mine) // 2]
    line = run["timeline"]
    elapsed = list(line["elapsed_s"].values())
    audio = list(line["audio_s"].values())
    if not elapsed:
        return ""
    speed = sum(audio) / sum(elapsed)
    return (
        f"`{name}` (median run, {run['wall_s']:.0f} s wall): model loaded in"
        f" {line['load_s']:.1f} s; cut into {line['segments']} segments"
        f" {line['cut_at_s']:.1f} s after the first log line; each segment took"
        f" {min(elapsed):.1f}–{max(elapsed):.1f} s (median"
        f" {report.median(elapsed):.1f} s) for {report.median(audio):.0f} s of"
        f" audio, i.e. {speed:.1f}× real time per segment in flight."
    )


def ratios(
    summary: dict[str, dict[str, float]],
) -> list[tuple[str, float, str, bool | None]]:
    """The issue's ratios: (what, value, target, passed or None if no target)."""
    rows: list[tuple[str, float, str, bool | None]] = []
    batched, whole = summary.get("batched-8"), summary.get("whole")
    for name in (n for n in summary if n.startswith("ours") or n not in SYSTEMS):
        mine = summary[name]
        target = name == "ours-2048"
        if batched:
            value = mine["rtf"] / batched["rtf"]
            passed = value >= THROUGHPUT_TARGET if target else None
            rows.append((f"{name} ÷ batched-8 throughput", value, "≥ 1.0", passed))
            value = batched["cpu_s"] / mine["cpu_s"]
            rows.append((f"{name} ÷ batched-8 audio per CPU second", value, "", None))
        if whole:
            value = mine["wer"] - whole["wer"]
            passed = value <= WER_TARGET_POINTS if name.startswith("ours-") else None
            rows.append((f"{name} WER − whole WER (points)", value, "≤ 1.0", passed))
    return rows


def markdown(data: dict[str, Any]) -> str:
    """The docs section for one run of this benchmark."""
    summary, systems = data["summary"], data["systems"]
    rows = [
        (
            f"`{name}`",
            systems[name],
            f"{s['rtf']:.1f}",
            f"{s['wall_s']:.0f}",
            f"{s['peak_rss_mb']:.0f}",
            f"{s['wer']:.1f}",
            f"{s['cpu_s']:.0f}",
            f"{s['others_cores']:.2f}",
            s["runs"],
        )
        for name, s in summary.items()
    ]
    headers = ("System", "What", "Real time ×", "Wall s", "Peak RSS MiB", "WER %")
    ratio_rows = [
        (
            what,
            f"{value:.2f}",
            target if passed is not None else "—",
            report.verdict(passed) if passed is not None else "for information",
        )
        for what, value, target, passed in data["ratios"]
    ]
    parts = [
        "## Pipeline against faster-whisper (throughput, memory, WER)",
        f"Run {data['when']} on {report.machine_line(data['machine'])}.",
        f"```\n{data['command']}\n```",
        f"Recording: `{data['audio']}`, {data['audio_s'] / 60:.1f} min of espeak-ng"
        " speech built by `python -m bench.corpus speech --minutes 20`. Every"
        " system: offline Whisper base, int8, beam 5, English,"
        f" {data['threads']} threads, its own fresh process; figures are medians"
        f" of {data['repeats']} run(s) per system, run in turn. Real time × is audio"
        " seconds per wall second from process start to exit (model load and"
        " segmentation included); peak RSS sums every process of the system's"
        " tree (ffmpeg included), sampled every 50 ms. CPU s is the CPU time the"
        " system used, which other people's work on the machine disturbs far less"
        " than wall time; others' cores is how many cores the rest of the"
        " machine kept busy meanwhile.",
        report.table((*headers, "CPU s", "Others' cores", "Runs"), rows),
        report.table(("Ratio", "Value", "Target", "Result"), ratio_rows),
        *data["notes"],
        report.load_note(data["runs"]),
    ]
    return "\n\n".join(p for p in parts if p)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline_bench", description=__doc__
    )
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    parser.add_argument("--variant", action="append", default=[], metavar="SPEC")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--cross-check", action="store_true", help="LibriVox WER")
    parser.add_argument("--docs", type=Path, help="write the section into this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    if args.audio == DEFAULT_AUDIO and not DEFAULT_AUDIO.is_file():
        corpus.build_speech(20, corpus.OUT_DIR)
    systems = [SYSTEMS[name] for name in args.systems]
    systems += [parse_variant(spec) for spec in args.variant]
    audio_s = audio_seconds(args.audio)
    reference = corpus.reference_for(args.audio)

    runs = []
    for repeat in range(args.repeats):
        for system in systems:
            tag = f"pipeline-{system.name}-{repeat}"
            runs.append(run_one(system, args.audio, tag, args.threads, args.timeout))
            log.info("%s: %.1f s wall", tag, runs[-1]["wall_s"])
    summary = summarise(runs, systems, audio_s, reference)

    notes = [segment_profile(runs, s.name) for s in systems if s.kind == "ours"]
    if args.cross_check:
        notes.append(cross_check(args.threads, args.timeout))
    data = {
        "when": report.now(),
        "command": shlex.join(["python", "-m", "bench.pipeline_bench", *argv]),
        "machine": machine(),
        "audio": os.path.relpath(args.audio),
        "audio_s": audio_s,
        "threads": args.threads,
        "repeats": args.repeats,
        "systems": {s.name: s.settings for s in systems},
        "summary": summary,
        "ratios": ratios(summary),
        "notes": notes,
        "runs": runs,
    }
    report.publish(
        corpus.OUT_DIR / "results", "pipeline", data, markdown(data), args.docs
    )


def cross_check(threads: int, timeout_s: float) -> str:
    """WER of ``whole`` and ``ours-2048`` on the real LibriVox clips."""
    audio = corpus.build_librivox(corpus.OUT_DIR)
    reference = corpus.reference_for(audio)
    wers = {}
    for name in ("whole", "ours-2048"):
        run = run_one(SYSTEMS[name], audio, f"librivox-{name}", threads, timeout_s)
        wers[name] = word_error_rate(reference, run["text"])
    return (
        "Cross-check on real read speech (the five LibriVox clips of"
        f" pocketsphinx-testdata, {audio_seconds(audio):.0f} s): WER"
        f" {wers['whole']:.1f} % for `whole`, {wers['ours-2048']:.1f} % for"
        " `ours-2048`."
    )


if __name__ == "__main__":
    main()
