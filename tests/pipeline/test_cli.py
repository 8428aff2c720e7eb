"""The command line as a user runs it: a real subprocess, real files."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipeline.config import Settings
from tests.conftest import concat

ROOT = Path(__file__).resolve().parents[2]


def cli(
    *args: str | Path, settings: Settings, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "transcribe", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=cli_env(settings, env),
        timeout=300,
    )


def cli_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "PD_DATA_DIR": str(settings.data_dir),
        "PD_MODEL": "tiny.en",
        "PD_LANGUAGE": "en",
        "PD_SEGMENT_SECONDS": "15",
        **(extra or {}),
    }


def test_transcribes_to_every_format(
    english_wav: Path, settings: Settings, tmp_path: Path
) -> None:
    outputs = {}
    for fmt in ("txt", "srt", "vtt", "json"):
        target = tmp_path / f"out.{fmt}"
        done = cli(english_wav, "--format", fmt, "--output", target, settings=settings)
        assert done.returncode == 0, done.stderr
        outputs[fmt] = target.read_text()

    assert "stella" in outputs["txt"].lower()
    assert re.match(r"\[00:00:0\d\] ", outputs["txt"])
    assert re.search(
        r"^1\n00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}\n", outputs["srt"], re.M
    )
    assert outputs["vtt"].startswith("WEBVTT\n\n00:00:")
    body = json.loads(outputs["json"])
    assert body["engine"] == "local" and body["model"] == "tiny.en"
    assert body["language"] == "en"
    assert body["segments"][0]["start"] >= 0
    assert any("fox" in s["text"].lower() for s in body["segments"])


def test_a_second_run_reuses_the_finished_transcript(
    english_wav: Path, settings: Settings
) -> None:
    first = cli(english_wav, settings=settings, env={"PD_LOG_LEVEL": "INFO"})
    second = cli(english_wav, settings=settings, env={"PD_LOG_LEVEL": "INFO"})

    assert first.returncode == 0 and second.returncode == 0
    assert "segment 0 started" in first.stderr
    assert "started" not in second.stderr
    assert first.stdout == second.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.wav"], "fel: Filen 'missing.wav' finns inte."),
        (["{text}"], "inte en ljud- eller videofil"),
        (
            ["{wav}", "--model", "/no/such/model"],
            "Modellen '/no/such/model' finns inte",
        ),
    ],
)
def test_a_users_mistake_gets_one_clear_line_and_no_traceback(
    english_wav: Path, settings: Settings, tmp_path: Path, args: list[str], message: str
) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("inte ljud\n")
    filled = [a.format(text=text, wav=english_wav) for a in args]

    done = cli(*filled, settings=settings)

    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--model", "/no/such/model"], {}, "Modellen '/no/such/model' finns inte"),
        (
            ["--engine", "openai"],
            {"PD_OPENAI_API_KEY": "", "OPENAI_API_KEY": "", "PD_OPENAI_BASE_URL": ""},
            "Ingen API-nyckel för OpenAI",
        ),
    ],
)
def test_an_engine_that_cannot_start_is_refused_before_the_recording_is_cut(
    english_wav: Path,
    settings: Settings,
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    done = cli(english_wav, *args, settings=settings, env=env)

    assert done.returncode == 1
    assert message in done.stderr
    recordings = settings.data_dir / "recordings"
    assert not recordings.exists() or not any(recordings.iterdir())


def test_an_unknown_setting_value_is_refused_clearly(
    english_wav: Path, settings: Settings
) -> None:
    done = cli(english_wav, settings=settings, env={"PD_MEMORY_BUDGET_MB": "lots"})

    assert done.returncode == 1
    assert "PD_MEMORY_BUDGET_MB har ett ogiltigt värde" in done.stderr


def test_killed_with_sigkill_and_run_again_it_resumes_at_the_next_segment(
    english_wav: Path, settings: Settings, tmp_path: Path
) -> None:
    long = concat([english_wav] * 3, tmp_path / "long.wav")
    env = cli_env(settings, {"PD_LOG_LEVEL": "INFO", "PD_MEMORY_BUDGET_MB": "300"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "transcribe", str(long), "--quiet"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "segment 1 transcribed" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = done_segments(settings)
    assert 0 in finished

    resumed = cli(long, settings=settings, env={"PD_LOG_LEVEL": "INFO"})

    assert resumed.returncode == 0, resumed.stderr
    started = {int(n) for n in re.findall(r"segment (\d+) started", resumed.stderr)}
    assert started and not started & finished
    assert resumed.stdout.lower().count("stella") == 3


def test_ffmpeg_dies_with_a_cli_killed_while_it_cuts(
    english_wav: Path, settings: Settings, tmp_path: Path
) -> None:
    long = concat([english_wav] * 150, tmp_path / "long.wav")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "transcribe", str(long), "--quiet"],
        cwd=ROOT,
        env=cli_env(settings, {}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # The ffmpeg that scans writes to a pipe and dies of SIGPIPE anyway; the
    # one that cuts writes only files, for seconds more, so it is the one to
    # catch.
    children: list[psutil.Process] = []
    deadline = time.monotonic() + 90
    while not children and time.monotonic() < deadline:
        found = psutil.Process(proc.pid).children(recursive=True)
        # Named ffmpeg only once setpriv has armed the signal and exec'd it.
        children = [
            c for c in found if "-segment_list" in _cmdline(c) and _name(c) == "ffmpeg"
        ]
        time.sleep(0.02)
    assert children, "ffmpeg never started cutting"

    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.5)

    # A killed orphan stays a zombie until init reaps it: dead all the same.
    assert [c for c in children if _running(c)] == []


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:
        return ""


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def test_interrupted_with_ctrl_c_it_says_how_to_continue(
    english_wav: Path, settings: Settings, tmp_path: Path
) -> None:
    long = concat([english_wav] * 6, tmp_path / "long.wav")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "transcribe", str(long)],
        # A suite started in the background of a shell inherits SIGINT
        # ignored, and so would the CLI; Ctrl-C must reach it as in a terminal.
        preexec_fn=_default_sigint,
        cwd=ROOT,
        env=cli_env(settings, {"PD_LOG_LEVEL": "INFO"}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "segment 0 started" in line:
            break
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    proc.wait(timeout=30)

    assert proc.returncode == 130
    assert "Kör samma kommando igen" in rest
    assert "Traceback" not in rest


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def done_segments(settings: Settings) -> set[int]:
    with sqlite3.connect(settings.data_dir / "pd.sqlite3") as conn:
        return {row[0] for row in conn.execute("SELECT idx FROM transcript_segments")}
