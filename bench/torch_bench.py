"""transformers + torch against faster-whisper/CTranslate2, on the same footing.

Keeps the engine choice on record. Each configuration runs in a fresh
process (``bench.stack_probe``): torch in a separate venv so the project's
environment stays clean, CTranslate2 with the project's Python. Whisper base
dimensions throughout; one 30 s window of the corpus; exactly 100 generated
tokens; the same number of threads.

The torch venv (a CPU build of torch lies on this machine's disk; check that
``pip list`` shows ``torch 2.13.0+cpu`` and no ``nvidia-*`` package)::

    python -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 transformers

    python -m bench.torch_bench --docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import corpus, ours, report
from bench.measurement import machine

log = logging.getLogger(__name__)

TORCH_PYTHON = Path("/tmp/torchvenv/bin/python")
# (stack, precision, beam)
CONFIGS = (
    ("torch", "fp32", 1),
    ("torch", "fp32", 5),
    ("torch", "int8", 5),
    ("ct2", "int8", 1),
    ("ct2", "int8", 5),
)


def run_probe(
    stack: str, precision: str, beam: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One configuration in a fresh process; the probe's JSON."""
    python = str(args.torch_python) if stack == "torch" else sys.executable
    cmd = [
        *(python, "-m", "bench.stack_probe", stack, "--audio", str(args.audio)),
        *("--precision", precision, "--beam", str(beam)),
        *("--tokens", str(args.tokens), "--repeats", str(args.repeats)),
        *("--threads", str(args.threads)),
    ]
    if stack == "ct2":
        cmd += ["--model", str(ours.base_model())]
    log.info("running %s", shlex.join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def label(result: dict[str, Any]) -> str:
    stack = "transformers + torch" if result["stack"] == "torch" else "faster-whisper"
    precision = result["precision"]
    if result["stack"] == "torch" and precision == "int8":
        precision = "dynamic int8"
    return f"{stack}, {precision}, beam {result['beam']}"


def markdown(data: dict[str, Any]) -> str:
    results = data["results"]
    ct2 = {r["beam"]: r for r in results if r["stack"] == "ct2"}
    rows = []
    for r in results:
        peer = ct2.get(r["beam"])
        ratio = f"{r['median_s'] / peer['median_s']:.2f}" if peer else "—"
        rows.append(
            (
                label(r),
                f"{r['imported']:.0f}",
                f"{r['loaded']:.0f}",
                f"{r['peak']:.0f}",
                f"{r['median_s']:.2f}",
                ratio,
            )
        )
    headers = (
        "Stack",
        "RSS after import MiB",
        "after load MiB",
        "peak generating MiB",
        f"s per 30 s window, {data['tokens']} tokens",
        "÷ faster-whisper, same beam",
    )
    versions = {k: v for r in results for k, v in r["versions"].items()}
    versions["cuda"] = versions.get("cuda") or "none (CPU build)"
    return "\n\n".join(
        [
            "## transformers + torch against faster-whisper (engine choice)",
            f"Run {data['when']} on {report.machine_line(data['machine'])}.",
            f"```\n{data['command']}\n```",
            "Whisper base dimensions; torch models are randomly initialised"
            " (`WhisperConfig` for base; no Hugging Face weights exist offline),"
            " which does not change memory or the cost of a decode step."
            " faster-whisper uses the offline base model, int8. Each row is a"
            f" fresh process; {data['threads']} threads; one 30 s window of the"
            f" corpus; exactly {data['tokens']} generated tokens (end of text"
            f" suppressed); median of {data['repeats']} timed generations after a"
            " warm-up. Peak is the process's VmHWM while generating (reset after"
            " the load). Dynamic int8 quantises a loaded fp32 model, so its"
            ' "after load" includes the fp32 weights\' pages. Versions: '
            + ", ".join(f"{k} {v}" for k, v in versions.items())
            + ".",
            report.table(headers, rows),
            *data["notes"],
        ]
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench.torch_bench", description=__doc__
    )
    parser.add_argument("--audio", type=Path, default=corpus.OUT_DIR / "speech-20m.wav")
    parser.add_argument("--torch-python", type=Path, default=TORCH_PYTHON)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--docs", type=Path, help="write the section into this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    if not args.torch_python.is_file():
        sys.exit(f"{args.torch_python} is missing; see the module docstring.")
    if not args.audio.is_file():
        corpus.build_speech(20, corpus.OUT_DIR)

    load_before = os.getloadavg()[0]
    results = [run_probe(stack, p, beam, args) for stack, p, beam in CONFIGS]
    data = {
        "when": report.now(),
        "command": shlex.join(["python", "-m", "bench.torch_bench", *argv]),
        "machine": machine(),
        "tokens": args.tokens,
        "repeats": args.repeats,
        "threads": args.threads,
        "results": results,
        "notes": [
            f"1-minute load average before the run: {load_before:.2f},"
            f" after: {os.getloadavg()[0]:.2f} (shared machine)."
        ],
    }
    report.publish(corpus.OUT_DIR / "results", "torch", data, markdown(data), args.docs)


if __name__ == "__main__":
    main()
