"""What the UI shows, as plain data and HTML, computed for one owner at a time.

Kept apart from the Gradio wiring in ``web.ui`` so it can be read and tested
without a browser. Every function takes the owner and checks ownership.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any

from pipeline import cleanup, transcript
from pipeline.exports import clock
from pipeline.storage import Store
from pipeline.worker import Worker

STATE_LABELS = {
    "uploading": "Laddas upp",
    "new": "Väntar",
    "segmenting": "Förbereds",
    "ready": "Väntar",
    "waiting": "Väntar",
    "running": "Transkriberas",
    "done": "Klar",
    "failed": "Misslyckades",
}
ENGINE_LABELS = {"local": "Lokal", "openai": "OpenAI", "edited": "Redigerad"}
TABLE_HEADERS = ["Titel", "Status", "Förlopp", "Motor", "Uppladdad", "Ljudet raderas"]
EXPORT_FORMATS = ("txt", "srt", "vtt", "json", "docx")


@dataclass(frozen=True)
class Listing:
    """The recordings table and the ids of its rows, in the same order."""

    rows: list[list[str]]
    ids: list[str]


def listing(store: Store, worker: Worker, owner: str, retention_days: float) -> Listing:
    rows: list[list[str]] = []
    ids: list[str] = []
    for rec in store.recordings_of(owner):
        rows.append(
            [
                rec["title"],
                status_label(rec),
                progress_label(rec, worker),
                ENGINE_LABELS.get(rec["engine"] or "", "–"),
                _date(rec["created_at"]),
                expiry_label(store, rec, retention_days),
            ]
        )
        ids.append(rec["id"])
    return Listing(rows, ids)


def status_label(rec: dict[str, Any]) -> str:
    if rec["state"] == "failed":
        return "Misslyckades"
    if rec["state"] in ("uploading", "segmenting"):
        return STATE_LABELS[rec["state"]]
    return STATE_LABELS.get(rec["transcript_state"] or "waiting", "Väntar")


def progress_label(rec: dict[str, Any], worker: Worker) -> str:
    total = rec["segments_total"] or 0
    done = rec["segments_done"] or 0
    if rec["transcript_state"] == "done":
        return "100 %"
    if not total:
        return "–"
    text = f"{done}/{total} avsnitt"
    live = worker.progress(rec["transcript_id"]) if rec["transcript_id"] else None
    if live is not None and live.eta_s is not None:
        text += f", cirka {_duration(live.eta_s)} kvar"
    return text


def expiry_label(store: Store, rec: dict[str, Any], retention_days: float) -> str:
    if rec["audio_deleted_at"]:
        return "Raderat"
    expires = cleanup.audio_expiry(store, rec["id"], retention_days)
    if expires is None:
        return "Sparas" if retention_days <= 0 else "–"
    return _date(expires)


def detail_markdown(store: Store, worker: Worker, owner: str, recording_id: str) -> str:
    rec = store.owned_recording(owner, recording_id)
    row = next(r for r in store.recordings_of(owner) if r["id"] == recording_id)
    parts = [f"**{html.escape(rec['title'])}** · {status_label(row)}"]
    if rec["duration_s"]:
        parts.append(f"längd {_duration(rec['duration_s'])}")
    if row["engine"]:
        parts.append(f"motor: {ENGINE_LABELS.get(row['engine'], row['engine'])}")
    if row["engine"] == "openai":
        parts.append(f"kostnad ${row['cost_usd']:.3f}")
    progress = progress_label(row, worker)
    if row["transcript_state"] != "done" and progress != "–":
        parts.append(progress)
    text = " · ".join(parts)
    error = rec["error"] or row["transcript_error"]
    if status_label(row) == "Misslyckades" and error:
        text += f"\n\n**Fel:** {html.escape(error)}"
    return text


def has_failed(store: Store, owner: str, recording_id: str) -> bool:
    row = next((r for r in store.recordings_of(owner) if r["id"] == recording_id), None)
    return row is not None and status_label(row) == "Misslyckades"


def transcript_html(store: Store, owner: str, recording_id: str) -> str:
    """The transcript's lines; each is a button that plays the audio from there."""
    row = next((r for r in store.recordings_of(owner) if r["id"] == recording_id), None)
    if row is None or not row["transcript_id"]:
        return "<p class='pd-empty'>Ingen text ännu.</p>"
    lines = transcript.lines(store, row["transcript_id"])
    if not lines:
        return "<p class='pd-empty'>Texten visas här avsnitt för avsnitt.</p>"
    items = [
        f"<button type='button' class='pd-line' data-start='{line.start:.3f}'>"
        f"<span class='pd-time'>{clock(line.start, hours=False)[:5]}</span> "
        f"{html.escape(line.text)}</button>"
        for line in lines
    ]
    return "<div class='pd-lines'>" + "".join(items) + "</div>"


def player_html(store: Store, owner: str, recording_id: str) -> str:
    rec = store.owned_recording(owner, recording_id)
    if rec["audio_deleted_at"]:
        return "<p class='pd-empty'>Ljudet har raderats enligt lagringstiden.</p>"
    return (
        f"<audio id='pd-audio' controls preload='metadata'"
        f" src='/api/recordings/{rec['id']}/audio'></audio>"
    )


def downloads_html(store: Store, owner: str, recording_id: str) -> str:
    row = next((r for r in store.recordings_of(owner) if r["id"] == recording_id), None)
    if row is None or row["transcript_state"] != "done":
        return ""
    links = [
        f"<a class='pd-download' href='/api/transcripts/{row['transcript_id']}"
        f"/export.{fmt}' download>{fmt.upper()}</a>"
        for fmt in EXPORT_FORMATS
    ]
    return "<div class='pd-downloads'>Ladda ner: " + " ".join(links) + "</div>"


def disk_label(store: Store) -> str:
    used, free = cleanup.disk_usage(store)
    return f"Lagring: {_size(used)} använt, {_size(free)} ledigt"


def _date(epoch: float | None) -> str:
    if not epoch:
        return "–"
    return time.strftime("%Y-%m-%d", time.localtime(epoch))


def _duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    if minutes < 1:
        return "under 1 min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"
