"""Prometheus text exposition of the app's few numbers that matter."""

from __future__ import annotations

from pathlib import Path

from pipeline.storage import Store
from pipeline.upload import UploadStats

JOB_STATES = ("waiting", "running", "done", "failed")


def render(store: Store, uploads: UploadStats) -> str:
    """The metrics page; cheap enough to scrape every few seconds."""
    states = {
        row["state"]: row["n"]
        for row in store.query(
            "SELECT state, COUNT(*) AS n FROM transcripts GROUP BY state"
        )
    }
    timing = store.query(
        "SELECT COUNT(*) AS n, COALESCE(SUM(elapsed_s), 0) AS s,"
        " COALESCE(SUM(end_s - start_s), 0) AS audio FROM transcript_segments"
    )[0]
    out = [
        _metric(
            "pd_uploads_in_progress",
            "gauge",
            "Upload requests receiving now.",
            uploads.in_progress,
        ),
        _metric(
            "pd_upload_bytes_received_total",
            "counter",
            "Upload bytes received since start.",
            uploads.bytes_received,
        ),
        _metric(
            "pd_uploads_completed_total",
            "counter",
            "Uploads handed over as recordings since start.",
            uploads.completed,
        ),
        "# HELP pd_jobs Transcripts by state.",
        "# TYPE pd_jobs gauge",
        *(f'pd_jobs{{state="{s}"}} {states.get(s, 0)}' for s in JOB_STATES),
        "# HELP pd_segment_seconds Time spent transcribing segments.",
        "# TYPE pd_segment_seconds summary",
        f"pd_segment_seconds_count {timing['n']}",
        f"pd_segment_seconds_sum {timing['s']:.3f}",
        _metric(
            "pd_segment_audio_seconds_total",
            "counter",
            "Audio seconds transcribed.",
            round(timing["audio"], 3),
        ),
        _metric(
            "pd_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the app process.",
            _rss_bytes(),
        ),
    ]
    return "\n".join(out) + "\n"


def _metric(name: str, kind: str, text: str, value: float) -> str:
    return f"# HELP {name} {text}\n# TYPE {name} {kind}\n{name} {value}"


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
