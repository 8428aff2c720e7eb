"""Kill -9 the CLI again and again during one long job; check that it resumes.

First an uninterrupted run gives the reference text and the pace of the
stages. Then, in a fresh data directory, one job is started, killed with
SIGKILL at a random moment, started again with the same arguments, killed
again, and so on ``--kills`` times; the run after the last kill is left to
finish. The first kills fall while ffmpeg cuts the recording, the rest while
segments are being transcribed. The kill points come from a seeded RNG
(``--seed``; printed, and random when not given).

Checks:

- every run that was not killed exits 0, and no run fails on its own;
- no segment stored as finished before a kill (read from ``pd.sqlite3``,
  table ``transcript_segments``) is started again by the next run (its
  "segment N started" INFO lines);
- the final text equals the uninterrupted run's text.

Only the CLI's process is killed, as ``kill -9 PID`` or the OOM killer would;
ffmpeg children that outlive it are recorded (and ended at the very end).

    python -m bench.resume_bench --kills 10 --docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import secrets
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import corpus, ours, report
from bench.measurement import machine

log = logging.getLogger(__name__)

POLL_S = 0.005


@dataclass
class Attempt:
    """One start of the CLI: how it ended and what it did."""

    number: int
    planned: str  # "segmentation", "transcription" or "finish"
    delay_s: float
    fallback_s: float = 0.0
    fell_back: bool = False
    phase_at_kill: str = ""
    returncode: int | None = None
    killed: bool = False
    wall_s: float = 0.0
    done_before: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)
    repeated: list[int] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    orphans_alive_at_next_start: int = 0


@dataclass(frozen=True)
class Pace:
    """How long the stages took in the uninterrupted run."""

    ffmpeg_s: float  # from the first ffmpeg child to the last one gone
    segment_s: float  # median time of one segment in flight


def plan(rng: random.Random, kills: int, pace: Pace) -> list[Attempt]:
    """Two or three kills in the cut, the rest in transcription, then a finish.

    Each kill also draws a transcription delay, used when its run finds the
    recording already cut (an earlier cut-time kill came too late).
    """
    during_cut = min(kills, rng.randint(2, 3))
    attempts = []
    for number in range(kills):
        phase = "segmentation" if number < during_cut else "transcription"
        cut_delay = rng.uniform(0.0, 0.9 * pace.ffmpeg_s)
        transcription_delay = rng.uniform(0.0, 1.5 * pace.segment_s)
        delay = cut_delay if phase == "segmentation" else transcription_delay
        attempts.append(
            Attempt(number, phase, round(delay, 3), round(transcription_delay, 3))
        )
    attempts.append(Attempt(kills, "finish", 0.0))
    return attempts


def transcript_done(data_dir: Path) -> set[int]:
    """Segments stored as finished for the one transcript in ``data_dir``."""
    db = data_dir / "pd.sqlite3"
    if not db.is_file():
        return set()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM transcripts")]
        if len(ids) > 1:
            raise RuntimeError(f"expected one transcript in {db}, found {len(ids)}")
        rows = conn.execute(
            "SELECT idx FROM transcript_segments WHERE transcript_id = ?",
            (ids[0] if ids else "",),
        ).fetchall()
    return {int(row[0]) for row in rows}


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes]) -> bool:
    """Poll until ``condition`` holds; False if the process ended first."""
    while proc.poll() is None:
        if condition():
            return True
        time.sleep(POLL_S)
    return False


def _ffmpeg_children(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
        return [c for c in children if c.name() == "ffmpeg"]
    except psutil.Error:
        return []


def _read(log_path: Path) -> str:
    return log_path.read_text(errors="replace") if log_path.exists() else ""


def _phase(log_text: str, ffmpeg_running: bool) -> str:
    if "started (" in log_text or "cut recording" in log_text:
        return "transcription"
    if ffmpeg_running:
        return "segmentation"
    return "model loaded" if "loaded model" in log_text else "startup"


def run_attempt(
    attempt: Attempt, cmd: list[str], env: dict[str, str], log_path: Path
) -> list[psutil.Process]:
    """Start the CLI, kill it as planned (or let it finish); the orphans left."""
    started = time.monotonic()
    with log_path.open("wb") as sink:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        armed = attempt.planned != "finish" and _wait_for(
            lambda: bool(_ffmpeg_children(proc)) or "started (" in _read(log_path),
            proc,
        )
        if armed and attempt.planned == "segmentation" and not _ffmpeg_children(proc):
            # The recording was cut by an earlier run: kill in transcription.
            attempt.planned, attempt.delay_s = "transcription", attempt.fallback_s
            attempt.fell_back = True
        if armed and attempt.planned == "transcription":
            armed = _wait_for(lambda: "started (" in _read(log_path), proc)
        children = _kill_after(proc, attempt, log_path) if armed else []
        attempt.returncode = proc.wait()
    attempt.wall_s = time.monotonic() - started

    orphans = [c for c in children if c.is_running()]
    attempt.orphans = [" ".join(c.cmdline()[-1:]) for c in orphans]
    attempt.started = ours.timeline(log_path).started
    return orphans


def _kill_after(
    proc: subprocess.Popen[bytes], attempt: Attempt, log_path: Path
) -> list[psutil.Process]:
    """Wait the attempt's delay, then SIGKILL the CLI alone; its ffmpeg children."""
    deadline = time.monotonic() + attempt.delay_s
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(POLL_S)
    if proc.poll() is not None:
        return []
    children = _ffmpeg_children(proc)
    attempt.phase_at_kill = _phase(_read(log_path), bool(children))
    os.kill(proc.pid, signal.SIGKILL)
    attempt.killed = True
    return children


def reference_run(
    audio: Path, budget_mb: int, extra: dict[str, str]
) -> tuple[str, Pace]:
    """An uninterrupted run: its text and the pace of its stages."""
    data_dir = ours.fresh_data_dir("resume-reference")
    output = data_dir / "transcript.json"
    cmd = ours.command(audio, data_dir, output)
    env = ours.environment(budget_mb, extra)
    log_path = data_dir / "run.log"

    seen: list[float] = []
    with log_path.open("wb") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            if _ffmpeg_children(proc):
                seen.append(time.monotonic())
            time.sleep(POLL_S)
    if proc.returncode != 0:
        raise RuntimeError(f"the uninterrupted run failed; see {log_path}")
    elapsed = list(ours.timeline(log_path).elapsed_s.values())
    pace = Pace(
        ffmpeg_s=(seen[-1] - seen[0]) if seen else 0.5,
        segment_s=report.median(elapsed),
    )
    return ours.output_text(output), pace


def run_job(
    cmd: list[str], env: dict[str, str], data_dir: Path, attempts: list[Attempt]
) -> list[Attempt]:
    """Start, kill and restart the job as planned, filling in each attempt."""
    left: list[psutil.Process] = []
    for attempt in attempts:
        attempt.done_before = sorted(transcript_done(data_dir))
        if attempt.number:
            previous = attempts[attempt.number - 1]
            previous.orphans_alive_at_next_start = sum(p.is_running() for p in left)
        log.info(
            "run %d: kill in %s after %.2f s",
            attempt.number,
            attempt.planned,
            attempt.delay_s,
        )
        log_path = data_dir / f"run-{attempt.number}.log"
        left = run_attempt(attempt, cmd, env, log_path)
        attempt.repeated = sorted(set(attempt.done_before) & set(attempt.started))
    for process in left:
        if process.is_running():
            process.kill()
    return attempts


def checks(
    attempts: list[Attempt], final_text: str, reference_text: str, segments: int
) -> list[tuple[str, str, bool]]:
    """(check, value, passed) for the issue's three conditions and the plan."""
    failed = [a.number for a in attempts if not a.killed and a.returncode != 0]
    repeated = {a.number: a.repeated for a in attempts if a.repeated}
    kills = [a for a in attempts if a.killed]
    phases = [a.phase_at_kill for a in kills]
    cut_kills = phases.count("segmentation")
    done = set(attempts[-1].done_before) | set(attempts[-1].started)
    return [
        (
            "kills made (during the cut / during transcription)",
            f"{len(kills)} ({cut_kills} / {phases.count('transcription')})",
            len(kills) == len(attempts) - 1 and 0 < cut_kills < len(kills),
        ),
        (
            "every run not killed exits 0",
            "all exit 0" if not failed else f"runs {failed} failed",
            not failed,
        ),
        (
            "no stored segment started again",
            "none" if not repeated else str(repeated),
            not repeated,
        ),
        (
            "all segments stored at the end",
            f"{len(done)} of {segments}",
            len(done) == segments,
        ),
        (
            "final text equals the uninterrupted run's",
            "identical" if final_text == reference_text else "differs",
            final_text == reference_text,
        ),
    ]


def markdown(data: dict[str, Any]) -> str:
    rows = [
        (
            a["number"],
            "cut → transcription" if a["fell_back"] else a["planned"],
            f"{a['delay_s']:.2f}" if a["planned"] != "finish" else "—",
            a["phase_at_kill"] or "—",
            "kill -9" if a["killed"] else f"exit {a['returncode']}",
            f"{a['wall_s']:.1f}",
            len(a["done_before"]),
            ", ".join(map(str, a["started"])) or "—",
            ", ".join(map(str, a["repeated"])) or "none",
            a["orphans_alive_at_next_start"] if a["orphans"] else 0,
        )
        for a in data["attempts"]
    ]
    headers = (
        "Run",
        "Kill planned",
        "Delay s",
        "Phase at kill",
        "Ended by",
        "Wall s",
        "Stored before",
        "Segments started",
        "Started again",
        "ffmpeg left running",
    )
    result = [(c, v, report.verdict(p)) for c, v, p in data["checks"]]
    return "\n\n".join(
        [
            "## Resume after kill -9",
            f"Run {data['when']} on {report.machine_line(data['machine'])}."
            f" Seed **{data['seed']}**.",
            f"```\n{data['command']}\n```",
            f"One job on `{data['audio']}` ({data['segments']} segments,"
            f" `PD_MEMORY_BUDGET_MB={data['budget_mb']}`): the CLI's own process"
            " is killed with SIGKILL at each planned point and the same command"
            " is run again. A segmentation kill falls a random delay after the"
            " first ffmpeg child appears (up to 0.9 × the time ffmpeg ran in the"
            f" uninterrupted run, {data['ffmpeg_s']:.1f} s); a transcription kill"
            ' a random delay after the run\'s first "segment N started" line'
            f" (up to 1.5 × the median segment time, {data['segment_s']:.1f} s)."
            " A cut-time kill whose run finds the recording already cut becomes"
            " a transcription kill."
            ' "Stored before" is read from `transcript_segments` before the run;'
            ' "Segments started" from its INFO log.',
            report.table(headers, rows),
            report.table(("Check", "Value", "Result"), result),
            *data["notes"],
        ]
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench.resume_bench", description=__doc__
    )
    parser.add_argument("--audio", type=Path, default=corpus.OUT_DIR / "speech-20m.mp3")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--budget", type=int, default=2048, help="PD_MEMORY_BUDGET_MB")
    parser.add_argument("--segment-seconds", type=float, help="PD_SEGMENT_SECONDS")
    parser.add_argument("--docs", type=Path, help="write the section into this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    print(f"seed {seed}", flush=True)
    extra = {}
    if args.segment_seconds:
        extra["PD_SEGMENT_SECONDS"] = f"{args.segment_seconds:g}"
    if not args.audio.is_file():
        corpus.build_speech(20, corpus.OUT_DIR)

    reference_text, pace = reference_run(args.audio, args.budget, extra)
    planned = plan(random.Random(seed), args.kills, pace)
    data_dir = ours.fresh_data_dir("resume-job")
    output = data_dir / "transcript.json"
    cmd = ours.command(args.audio, data_dir, output)
    attempts = run_job(cmd, ours.environment(args.budget, extra), data_dir, planned)
    segments = ours.timeline(data_dir / f"run-{len(attempts) - 1}.log").segments
    segments = segments or len(transcript_done(data_dir))

    final_text = ours.output_text(output) if output.is_file() else ""
    orphans = sum(bool(a.orphans) for a in attempts)
    notes = [
        f"{orphans} of the {sum(a.killed for a in attempts)} kills left an ffmpeg"
        " child running after the CLI was gone."
        if orphans
        else "No kill left an ffmpeg child running."
    ]
    data = {
        "when": report.now(),
        "command": shlex.join(["python", "-m", "bench.resume_bench", *argv]),
        "machine": machine(),
        "seed": seed,
        "audio": os.path.relpath(args.audio),
        "budget_mb": args.budget,
        "segments": segments,
        "ffmpeg_s": pace.ffmpeg_s,
        "segment_s": pace.segment_s,
        "attempts": [asdict(a) for a in attempts],
        "checks": checks(attempts, final_text, reference_text, segments),
        "notes": notes,
    }
    report.publish(
        corpus.OUT_DIR / "results", "resume", data, markdown(data), args.docs
    )


if __name__ == "__main__":
    main()
