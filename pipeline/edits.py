"""The recording's transcript chosen from a comparison, merged or edited by hand.

Choosing A, or a B that covers the whole recording, only points the recording
at that transcript; its view, its downloads and its exports follow. Choosing
a B of a stretch makes a merged transcript: A outside the compared part, B
inside. The merged text can also be edited as plain text, one line per timed
line written ``[0:01:05.3] text``, and saved. Merged and edited transcripts
are stored like any other (engine ``edited``), one result per segment, and
become the recording's transcript.

An edited line keeps the end time of the line it came from when its start is
unchanged; otherwise it ends where the next line starts.
"""

from __future__ import annotations

import bisect
import json
import logging
import re
import time
import uuid

from models.engine import Line
from pipeline import comparison
from pipeline.errors import InputError
from pipeline.exports import clock
from pipeline.storage import Store

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2_000_000
_STAMP = re.compile(r"^\s*\[(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:[.,]\d+)?)\]\s?(.*)$")


def choose(store: Store, owner: str, comparison_id: str, side: str) -> str:
    """Make side ``a`` or ``b`` the recording's transcript; that transcript's id."""
    found = comparison.load(store, owner, comparison_id)
    picked = {"a": found.a, "b": found.b}.get(side)
    if picked is None:
        raise InputError("Välj A eller B.")
    if picked.state != "done":
        raise InputError(f"{picked.label} är inte klar och kan inte väljas än.")

    if picked.whole:
        _point_at(store, found.recording_id, picked.transcript_id)
        log.info("recording %s uses transcript %s", found.recording_id, side)
        return picked.transcript_id
    lines = merged_lines(store, found, "b")
    return _save(store, found, lines, model="sammanfogad")


def merged_lines(store: Store, found: comparison.Comparison, side: str) -> list[Line]:
    """A's lines outside the compared part, the chosen side's inside it."""
    inside = found.a if side == "a" else found.b
    outside = [
        Line.from_dict(item)
        for result in store.segment_results(found.a.transcript_id)
        if comparison.window_of(found.windows, result["start_s"], result["end_s"])
        is None
        for item in result["lines"]
    ]
    chosen = [line for lines in inside.windows.values() for line in lines]
    return sorted(outside + chosen, key=lambda line: line.start)


def merged_text(store: Store, owner: str, comparison_id: str, side: str) -> str:
    """The merged transcript as editable text, one ``[time] text`` per line."""
    found = comparison.load(store, owner, comparison_id)
    lines = merged_lines(store, found, "b" if side == "b" else "a")
    # Tenths are rounded, not cut off, so that ``parse`` finds each end again.
    return "".join(
        f"[{clock(round(line.start, 1))[:10]}] {line.text}\n" for line in lines
    )


def save_edited(store: Store, owner: str, comparison_id: str, text: str) -> str:
    """Store ``text`` as an edited transcript and make it the recording's."""
    found = comparison.load(store, owner, comparison_id)
    if len(text) > MAX_TEXT_CHARS:
        raise InputError("Texten är för lång (högst 2 miljoner tecken).")
    sources = merged_lines(store, found, "a") + merged_lines(store, found, "b")
    lines = parse(text, sources, _duration(store, found.recording_id))
    if not lines:
        raise InputError("Texten är tom; inget sparades.")
    return _save(store, found, lines, model="redigerad")


def parse(text: str, sources: list[Line], duration_s: float) -> list[Line]:
    """Timed lines from edited text; ``sources`` lend their end times."""
    starts: list[tuple[float, str]] = []
    for raw in text.splitlines():
        match = _STAMP.match(raw)
        if match:
            hours, minutes, seconds, rest = match.groups()
            whole = int(hours or 0) * 3600 + int(minutes) * 60
            starts.append((whole + float(seconds.replace(",", ".")), rest.strip()))
        elif raw.strip() and starts:
            at, before = starts[-1]
            starts[-1] = (at, f"{before} {raw.strip()}".strip())
        elif raw.strip():
            starts.append((0.0, raw.strip()))
    kept = sorted((s for s in starts if s[1]), key=lambda s: s[0])

    ends = {round(line.start, 1): line.end for line in sources}
    lines = []
    for n, (start, words) in enumerate(kept):
        following = kept[n + 1][0] if n + 1 < len(kept) else max(duration_s, start)
        end = ends.get(round(start, 1), following)
        lines.append(Line(round(start, 3), round(max(start, end), 3), words))
    return lines


def _save(
    store: Store, found: comparison.Comparison, lines: list[Line], *, model: str
) -> str:
    """One transaction: the transcript, one result per segment, the choice."""
    pieces = store.segments(found.recording_id)
    if not pieces:
        raise InputError("Inspelningen har inga avsnitt att spara texten i.")
    starts = [p.start_s for p in pieces]
    grouped: list[list[Line]] = [[] for _ in pieces]
    for line in lines:
        grouped[max(0, bisect.bisect_right(starts, line.start) - 1)].append(line)
    language = store.transcript(found.a.transcript_id)["language"]
    transcript_id, now = uuid.uuid4().hex, time.time()

    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO transcripts (id, recording_id, engine, model, language,"
            " state, created_at, started_at, finished_at)"
            " VALUES (?, ?, 'edited', ?, ?, 'done', ?, ?, ?)",
            (transcript_id, found.recording_id, model, language, now, now, now),
        )
        conn.executemany(
            "INSERT INTO transcript_segments (transcript_id, idx, start_s, end_s,"
            " text, lines, elapsed_s, cost_usd) VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
            [
                (
                    transcript_id,
                    piece.idx,
                    piece.start_s,
                    piece.end_s,
                    " ".join(line.text for line in group),
                    json.dumps([line.to_dict() for line in group], ensure_ascii=False),
                )
                for piece, group in zip(pieces, grouped, strict=True)
            ],
        )
        conn.execute(
            "UPDATE recordings SET chosen_transcript_id = ?, updated_at = ?"
            " WHERE id = ?",
            (transcript_id, now, found.recording_id),
        )
    log.info(
        "recording %s uses a %s transcript of %d lines",
        found.recording_id,
        model,
        len(lines),
    )
    return transcript_id


def _point_at(store: Store, recording_id: str, transcript_id: str) -> None:
    with store.transaction() as conn:
        conn.execute(
            "UPDATE recordings SET chosen_transcript_id = ?, updated_at = ?"
            " WHERE id = ?",
            (transcript_id, time.time(), recording_id),
        )


def _duration(store: Store, recording_id: str) -> float:
    rec = store.recording(recording_id)
    pieces = store.segments(recording_id)
    return float(rec["duration_s"] or (pieces[-1].end_s if pieces else 0.0))
