"""Resident memory of a fresh Python after importing one module or another.

Each module is imported in its own new interpreter, three times; the table
gives the median VmRSS after the import and its cost over a bare interpreter.
It explains where the fixed part of every process's memory goes, and why
sqlite-utils is not a dependency: it imports pandas and numpy whenever they
are installed (gradio installs them), which the CLI then carries for nothing.

    python -m bench.import_cost --docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import corpus, report
from bench.measurement import machine

REPEATS = 3
MODULES = (
    "sqlite3",
    "sqlite_utils",
    "pipeline.cli",
    "models.openai_api",
    "models.local, faster_whisper",
    "gradio",
    "web.server",
)
_MEASURE = (
    "status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
    "print(int(status['VmRSS'].split()[0]))\n"
)


def rss_after_import(modules: str) -> float:
    """Median VmRSS in MiB of a new interpreter that imported ``modules``."""
    code = (f"import {modules}\n" if modules else "") + _MEASURE
    samples = []
    for _ in range(REPEATS):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        samples.append(int(done.stdout.strip().splitlines()[-1]) / 1024)
    return statistics.median(samples)


def installed(modules: str) -> bool:
    return all(
        importlib.util.find_spec(name.strip().split(".")[0]) is not None
        for name in modules.split(",")
    )


def markdown(data: dict[str, Any]) -> str:
    bare = data["bare_mib"]
    rows = [
        (f"`import {m}`", f"{mib:.0f}", f"{mib - bare:+.0f}")
        for m, mib in data["modules"].items()
    ]
    parts = [
        "## Memory of imports (why sqlite-utils went)",
        f"Run {data['when']} on {report.machine_line(data['machine'])}.",
        f"```\n{data['command']}\n```",
        f"Median VmRSS of a new interpreter after one import, {REPEATS} runs each;"
        f" a bare interpreter holds {bare:.0f} MiB. sqlite-utils imports pandas"
        " and numpy when they are installed, and gradio installs them; the"
        " pipeline used it only to turn rows into dicts, so `pipeline/storage.py`"
        " now does that with the standard `sqlite3` module.",
        report.table(("Import", "RSS MiB", "Over bare MiB"), rows),
    ]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench.import_cost", description=__doc__
    )
    parser.add_argument("--docs", type=Path, help="write the section into this file")
    args = parser.parse_args(argv)

    data = {
        "when": report.now(),
        "command": shlex.join(["python", "-m", "bench.import_cost", *argv]),
        "machine": machine(),
        "bare_mib": rss_after_import(""),
        "modules": {m: rss_after_import(m) for m in MODULES if installed(m)},
    }
    report.publish(
        corpus.OUT_DIR / "results", "import-cost", data, markdown(data), args.docs
    )


if __name__ == "__main__":
    main()
