"""Peak memory of our pipeline as recordings get longer.

Runs ``python -m pipeline transcribe`` on recordings of the given lengths
(default 5, 60 and 180 minutes: the 20-minute corpus looped with ffmpeg),
each in a fresh process and data directory, and samples the summed RSS of
the CLI and all its children (ffmpeg) every 50 ms.

- ``--engine local``: offline base model at ``PD_MEMORY_BUDGET_MB=512``;
  targets: every peak inside 512 MB, and flat (largest ÷ smallest peak ≤ 1.10).
- ``--engine openai``: the OpenAI engine against a local faster-whisper-server
  on 127.0.0.1 (its memory is not counted, only ours); target: under 150 MB.

    python -m bench.memory_bench --minutes 5 60 180 --docs docs/benchmarks.md
    python -m bench.memory_bench --engine openai --minutes 5 60 180 --docs docs/...
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import corpus, ours, report
from bench.measurement import machine, run_measured
from bench.pipeline_bench import audio_seconds

log = logging.getLogger(__name__)

LOCAL_BUDGET_MB = 512
OPENAI_LIMIT_MB = 150
FLAT_SHARE = 0.10
MB_PER_MIB = 1.048576
OPENAI_ENGINE = Path(__file__).resolve().parents[1] / "models" / "openai_api.py"
SERVER_CONFIG = """\
models:
  - name: whisper-1
    path: {model}
    model_options: {{device: cpu, compute_type: int8, cpu_threads: 1}}
"""


def recording(minutes: float, source: Path) -> Path:
    """The corpus looped (or cut) to ``minutes``."""
    return corpus.build_loop(source, minutes, corpus.OUT_DIR)


@contextmanager
def whisper_server(model: Path) -> Iterator[str]:
    """A faster-whisper-server on a free loopback port; yields its /v1 URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = corpus.OUT_DIR / "whisper-server.yaml"
    config.write_text(SERVER_CONFIG.format(model=model))
    cmd = [
        *(sys.executable, "-m", "faster_whisper_server", "--config", str(config)),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]
    server_log = (corpus.OUT_DIR / "whisper-server.log").open("wb")
    server = subprocess.Popen(cmd, stdout=server_log, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/health", server)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait(timeout=30)
        server_log.close()


def _wait_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("faster-whisper-server exited; see its log in bench/out")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("faster-whisper-server did not answer within 120 s")


def run_cli(
    audio: Path, engine: str, extra_env: dict[str, str], keep: bool
) -> dict[str, Any]:
    """One measured CLI run on ``audio``; figures and the timeline."""
    tag = f"memory-{engine}-{audio.stem}"
    data_dir = ours.fresh_data_dir(tag)
    output = data_dir / "transcript.json"
    cmd = ours.command(audio, data_dir, output)
    if engine == "openai":
        cmd += ["--engine", "openai"]
    env = ours.environment(LOCAL_BUDGET_MB, extra_env)
    log_path = data_dir / "run.log"

    log.info("running %s: %s", tag, shlex.join(cmd))
    measured = run_measured(cmd, env=env, log_path=log_path)
    if measured.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{tag} exited {measured.returncode}:\n{tail}")
    line = ours.timeline(log_path)
    if not keep:
        shutil.rmtree(data_dir / "recordings", ignore_errors=True)
    return {
        "audio": audio.name,
        "audio_s": audio_seconds(audio),
        "segments": line.segments,
        **measured.to_dict(),
    }


def verdicts(engine: str, runs: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """(check, value, passed) against the issue's targets, in MB of 10⁶ bytes."""
    peaks = [r["peak_rss_mb"] for r in runs]
    worst = max(peaks)
    worst_text = f"{worst:.0f} MiB = {worst * MB_PER_MIB:.0f} MB"
    if engine == "openai":
        limit = OPENAI_LIMIT_MB
        return [(f"largest peak < {limit} MB", worst_text, worst * MB_PER_MIB < limit)]
    spread = max(peaks) / min(peaks) - 1
    return [
        (
            f"largest peak ≤ {LOCAL_BUDGET_MB} MB",
            worst_text,
            worst * MB_PER_MIB <= LOCAL_BUDGET_MB,
        ),
        (
            "largest ÷ smallest peak − 1 ≤ 10 %",
            f"{100 * spread:.1f} %",
            spread <= FLAT_SHARE,
        ),
    ]


def peak_mix(parts: dict[str, float]) -> str:
    """Which processes the largest sampled sum was made of, by command name."""
    by_name: dict[str, float] = {}
    for key, mib in parts.items():
        name = key.rsplit(":", 1)[0]
        by_name[name] = by_name.get(name, 0.0) + mib
    ranked = sorted(by_name.items(), key=lambda item: -item[1])
    return " + ".join(f"{name} {mib:.0f}" for name, mib in ranked) or "–"


def markdown(data: dict[str, Any]) -> str:
    engine = data["engine"]
    rows = [
        (
            f"{r['audio_s'] / 60:.1f}",
            r["segments"],
            f"{r['peak_rss_mb']:.0f}",
            peak_mix(r.get("peak_parts", {})),
            f"{r.get('median_rss_mb', 0):.0f}",
            f"{r['hwm_sum_mb']:.0f}",
            f"{r['wall_s']:.0f}",
            f"{r['audio_s'] / r['wall_s']:.1f}",
            f"{r['others_cores']:.2f}",
        )
        for r in data["runs"]
    ]
    headers = (
        "Minutes",
        "Segments",
        "Peak RSS MiB",
        "Peak made of (MiB)",
        "Median RSS MiB",
        "Sum of per-process peaks MiB",
        "Wall s",
        "Real time ×",
        "Others' cores",
    )
    checks = [(c, v, report.verdict(p)) for c, v, p in data["verdicts"]]
    if engine == "openai":
        what = (
            "OpenAI engine (`--engine openai`) against faster-whisper-server 0.0.3"
            " on 127.0.0.1 serving tiny.en int8; the server's memory is not"
            " counted, only our CLI and its ffmpeg children."
        )
    else:
        what = (
            "Local engine, offline base model, int8, beam 5,"
            f" `PD_MEMORY_BUDGET_MB={LOCAL_BUDGET_MB}` (one segment in flight)."
        )
    parts = [
        f"## Memory against recording length ({engine} engine)",
        f"Run {data['when']} on {report.machine_line(data['machine'])}.",
        f"```\n{data['command']}\n```",
        f"{what} Recordings are the 20-minute corpus looped or cut with ffmpeg"
        " (`python -m bench.corpus loop`), MP3. Peak RSS sums every process of"
        " the CLI's tree, sampled every 50 ms; the sum of per-process peaks"
        " (VmHWM) is an upper bound that also catches spikes shorter than 50 ms."
        " 1 MB = 0.954 MiB.",
        report.table(headers, rows),
        report.table(("Check", "Value", "Result"), checks),
        report.load_note(data["runs"]),
    ]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory_bench", description=__doc__
    )
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 60, 180])
    parser.add_argument("--engine", choices=("local", "openai"), default="local")
    parser.add_argument(
        "--source", type=Path, default=corpus.OUT_DIR / "speech-20m.mp3"
    )
    parser.add_argument("--keep", action="store_true", help="keep the segments")
    parser.add_argument("--docs", type=Path, help="write the section into this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    if args.engine == "openai" and not OPENAI_ENGINE.is_file():
        sys.exit("models/openai_api.py is not there yet; run the local engine only.")
    if not args.source.is_file():
        corpus.build_speech(20, corpus.OUT_DIR)
    audios = [recording(m, args.source) for m in args.minutes]

    if args.engine == "openai":
        tiny = ours.tiny_en_model()
        with whisper_server(tiny) as url:
            env = {"PD_OPENAI_BASE_URL": url, "PD_OPENAI_API_KEY": "bench"}
            runs = [run_cli(a, "openai", env, args.keep) for a in audios]
    else:
        runs = [run_cli(a, "local", {}, args.keep) for a in audios]

    data = {
        "when": report.now(),
        "command": shlex.join(["python", "-m", "bench.memory_bench", *argv]),
        "machine": machine(),
        "engine": args.engine,
        "runs": runs,
        "verdicts": verdicts(args.engine, runs),
    }
    report.publish(
        corpus.OUT_DIR / "results",
        f"memory-{args.engine}",
        data,
        markdown(data),
        args.docs,
    )


if __name__ == "__main__":
    main()
