"""Write benchmark results into docs/benchmarks.md, one marked section each.

Every benchmark owns the text between ``<!-- bench:KEY:start -->`` and
``<!-- bench:KEY:end -->`` and replaces only that, so sections written by
other people or other benchmarks stay as they are. A missing section is
appended at the end of the file.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TITLE = "# Benchmarks\n"


def replace_section(doc: Path, key: str, body: str) -> None:
    """Put ``body`` between the markers of ``key``, leaving the rest untouched."""
    start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = doc.read_text(encoding="utf-8") if doc.is_file() else TITLE

    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; numbers are expected already formatted as text."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(" --- " for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def verdict(passed: bool) -> str:
    return "**pass**" if passed else "**FAIL**"


def machine_line(facts: dict[str, Any]) -> str:
    return (
        f"{facts['cpu']}, {facts['cores']} cores, {facts['memory_gib']} GiB RAM,"
        f" Linux {facts['kernel']}"
    )


def load_note(runs: Sequence[dict[str, Any]]) -> str:
    """One sentence on how busy the shared machine was during the runs."""
    others = [r["others_cores"] for r in runs]
    loads = [r["load_before"] for r in runs]
    return (
        "Other work on the machine kept"
        f" {min(others):.2f}–{max(others):.2f} cores busy during the runs"
        f" (median {median(others):.2f} of {os.cpu_count()}); the 1-minute load"
        " average"
        f" before each run was {min(loads):.2f}–{max(loads):.2f}."
    )


def save_raw(out_dir: Path, name: str, data: dict[str, Any]) -> Path:
    """Keep every figure of a run as JSON beside the generated audio."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path


def publish(
    out_dir: Path, key: str, data: dict[str, Any], section: str, docs: Path | None
) -> None:
    """Keep the raw figures, print the section, and write it into ``docs`` if given."""
    raw = save_raw(out_dir, key, data)
    print(section)
    print(f"\nraw figures: {raw}")
    if docs:
        replace_section(docs, key, section)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M %Z")
