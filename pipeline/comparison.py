"""Comparisons: the other engine run on a recording, lined up with its transcript.

A comparison pairs the recording's transcript when it was started (side A,
the reference) with a new transcript by the engine the user picked (side B).
B may cover a stretch only, to keep API costs down: the worker then
transcribes the segments overlapping the stretch, each whole (segments end at
pauses, so no word is cut), and the compared part is the stretch widened to
their edges. Both sides are compared on exactly those segments.

The segments are also the windows the two sides are lined up by: each stored
result of a side falls in the window holding its midpoint. Words are aligned
window by window (``pipeline.alignment``), so a word is never matched with
one said minutes away, and the counts of all windows are summed.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from models.engine import Line
from models.openai_api import OPENAI_BASE_URL, price_per_minute_usd
from pipeline import alignment
from pipeline.config import ENGINES, Settings
from pipeline.errors import EngineError, InputError, NotFoundError
from pipeline.storage import CURRENT_TRANSCRIPT_SQL, Store
from pipeline.transcript import overlapping

log = logging.getLogger(__name__)

_CLOCK = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:[.,]\d+)?)$")


@dataclass(frozen=True)
class Window:
    """One segment of the recording: the unit the two sides are lined up by."""

    idx: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Plan:
    """What starting a comparison would run, and what it would cost."""

    recording_id: str
    reference_id: str
    engine: str
    model: str
    #: The stretch asked for; both None for the whole recording.
    start_s: float | None
    end_s: float | None
    windows: list[Window]
    estimated_cost_usd: float
    #: The host the audio is sent to; empty when it stays on the server.
    destination: str

    @property
    def audio_s(self) -> float:
        return sum(w.end_s - w.start_s for w in self.windows)


@dataclass(frozen=True)
class Side:
    """One transcript of a comparison, restricted to the compared windows."""

    label: str
    transcript_id: str
    engine: str
    model: str
    #: ``waiting``, ``running``, ``done`` or ``failed``.
    state: str
    error: str
    #: The stored lines of each window this side has a result for.
    windows: dict[int, list[Line]]
    #: Seconds the engine worked on these windows, summed segment by segment.
    work_s: float
    cost_usd: float
    whole: bool


@dataclass(frozen=True)
class Token:
    """A word as written, with how the alignment classed it.

    ``mark`` is ``same``, ``sub`` (the other side has another word here),
    ``del`` (only in A), ``ins`` (only in B), or empty: not a word (a lone
    dash), or the other side has nothing for this window yet.
    """

    text: str
    mark: str


@dataclass(frozen=True)
class LineView:
    start_s: float
    tokens: list[Token]


@dataclass(frozen=True)
class Row:
    """One window side by side; a side is None until it has a result there."""

    window: Window
    a: list[LineView] | None
    b: list[LineView] | None
    score: alignment.Score | None


@dataclass(frozen=True)
class Comparison:
    """Everything the comparison view shows; ``score`` only once both are done."""

    id: str
    recording_id: str
    created_at: float
    windows: list[Window]
    a: Side
    b: Side
    rows: list[Row]
    score: alignment.Score | None
    #: Windows that entered ``score`` (both sides have them).
    scored_windows: int
    #: ``a`` or ``b`` when that side is the recording's transcript now.
    current: str | None

    @property
    def covered_start_s(self) -> float:
        return self.windows[0].start_s if self.windows else 0.0

    @property
    def covered_end_s(self) -> float:
        return self.windows[-1].end_s if self.windows else 0.0


def parse_clock(text: str) -> float | None:
    """Seconds from ``90``, ``1:30`` or ``1:02:03.5``; None for an empty field."""
    cleaned = text.strip()
    if not cleaned:
        return None
    match = _CLOCK.match(cleaned)
    if match is None:
        raise InputError(
            f"”{cleaned[:20]}” är ingen tid. Skriv till exempel 1:30 eller 1:02:03."
        )
    first, second, seconds = match.groups()
    hours, minutes = (first, second) if second is not None else (None, first)
    whole = int(hours or 0) * 3600 + int(minutes or 0) * 60
    return whole + float(seconds.replace(",", "."))


def plan(
    store: Store,
    settings: Settings,
    owner: str,
    recording_id: str,
    *,
    engine: str,
    start_s: float | None = None,
    end_s: float | None = None,
) -> Plan:
    """Check that ``engine`` can run on the stretch and estimate its cost."""
    rec = store.owned_recording(owner, recording_id)
    if engine not in ENGINES:
        raise InputError(f"Okänd motor: {engine[:20]}.")
    if rec["audio_deleted_at"]:
        raise InputError(
            "Ljudet till inspelningen har raderats enligt lagringstiden,"
            " så ingen ny transkribering kan göras."
        )
    reference_id = current_transcript_id(store, recording_id)
    pieces = store.segments(recording_id)
    if reference_id is None or rec["state"] != "ready" or not pieces:
        raise InputError(
            "Inspelningen är inte färdigförberedd än. Vänta tills den första"
            " transkriberingen har kommit i gång och försök sedan igen."
        )

    duration = rec["duration_s"] or pieces[-1].end_s
    start_s, end_s = _stretch(start_s, end_s, duration)
    if start_s is not None and end_s is not None:
        pieces = overlapping(pieces, start_s, end_s)
    windows = [Window(p.idx, p.start_s, p.end_s) for p in pieces]
    model, price, destination = _engine_terms(settings, engine)
    cost = sum(round((w.end_s - w.start_s) / 60 * price, 6) for w in windows)

    return Plan(
        recording_id=recording_id,
        reference_id=reference_id,
        engine=engine,
        model=model,
        start_s=start_s,
        end_s=end_s,
        windows=windows,
        estimated_cost_usd=round(cost, 6),
        destination=destination,
    )


def start(
    store: Store,
    settings: Settings,
    owner: str,
    recording_id: str,
    *,
    engine: str,
    start_s: float | None = None,
    end_s: float | None = None,
) -> str:
    """Queue the other side of a comparison; its id.

    The same comparison asked for again is not run twice: a failed one is
    queued again (its finished segments are kept), any other is returned.
    """
    chosen = plan(
        store,
        settings,
        owner,
        recording_id,
        engine=engine,
        start_s=start_s,
        end_s=end_s,
    )
    existing = store.query(
        "SELECT c.id, t.id AS other_id, t.state FROM comparisons c"
        " JOIN transcripts t ON t.id = c.other_id"
        " WHERE c.recording_id = ? AND c.reference_id = ? AND t.engine = ?"
        " AND t.start_s IS ? AND t.end_s IS ? ORDER BY c.created_at DESC LIMIT 1",
        (recording_id, chosen.reference_id, engine, chosen.start_s, chosen.end_s),
    )
    if existing:
        if existing[0]["state"] == "failed":
            store.set_transcript_state(existing[0]["other_id"], "waiting")
        return str(existing[0]["id"])

    comparison_id, other_id, now = uuid.uuid4().hex, uuid.uuid4().hex, time.time()
    language = store.transcript(chosen.reference_id)["language"]
    # One transaction: the worker must never see the transcript without its
    # stretch, or it would transcribe the whole recording.
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO transcripts (id, recording_id, engine, model, language,"
            " state, created_at, start_s, end_s)"
            " VALUES (?, ?, ?, ?, ?, 'waiting', ?, ?, ?)",
            (other_id, recording_id, engine, chosen.model, language, now)
            + (chosen.start_s, chosen.end_s),
        )
        conn.execute(
            "INSERT INTO comparisons (id, recording_id, reference_id, other_id,"
            " created_at) VALUES (?, ?, ?, ?, ?)",
            (comparison_id, recording_id, chosen.reference_id, other_id, now),
        )
    log.info(
        "comparison %s: %s on %d segments (%.0f s audio) of recording %s",
        comparison_id,
        engine,
        len(chosen.windows),
        chosen.audio_s,
        recording_id,
    )
    return comparison_id


def comparisons_of(store: Store, owner: str, recording_id: str) -> list[dict[str, Any]]:
    """The recording's comparisons, newest first, with the other side's state."""
    store.owned_recording(owner, recording_id)
    return store.query(
        "SELECT c.id, c.created_at, t.engine, t.model, t.state, t.start_s, t.end_s"
        " FROM comparisons c JOIN transcripts t ON t.id = c.other_id"
        " WHERE c.recording_id = ? ORDER BY c.created_at DESC",
        (recording_id,),
    )


def load(store: Store, owner: str, comparison_id: str) -> Comparison:
    """The comparison with both sides lined up, if ``owner`` has the recording."""
    row = owned_comparison(store, owner, comparison_id)
    other = store.transcript(row["other_id"])
    pieces = store.segments(row["recording_id"])
    if other["start_s"] is not None and other["end_s"] is not None:
        pieces = overlapping(pieces, other["start_s"], other["end_s"])
    windows = [Window(p.idx, p.start_s, p.end_s) for p in pieces]

    a = _side(store, "A", store.transcript(row["reference_id"]), windows)
    b = _side(store, "B", other, windows)
    rows = [_row(w, a.windows.get(w.idx), b.windows.get(w.idx)) for w in windows]
    scored = [r.score for r in rows if r.score is not None]
    total = sum(scored, alignment.Score()) if a.state == b.state == "done" else None
    now = current_transcript_id(store, row["recording_id"])
    current = {a.transcript_id: "a", b.transcript_id: "b"}.get(now or "")

    return Comparison(
        id=row["id"],
        recording_id=row["recording_id"],
        created_at=row["created_at"],
        windows=windows,
        a=a,
        b=b,
        rows=rows,
        score=total,
        scored_windows=len(scored) if total is not None else 0,
        current=current,
    )


def owned_comparison(store: Store, owner: str, comparison_id: str) -> dict[str, Any]:
    """The comparison's row if ``owner`` has its recording; else as if none."""
    rows = store.query(
        "SELECT c.* FROM comparisons c JOIN recordings r ON r.id = c.recording_id"
        " WHERE c.id = ? AND r.owner = ?",
        (comparison_id, owner),
    )
    if not rows:
        raise NotFoundError("Jämförelsen finns inte (den kan ha tagits bort).")
    return rows[0]


def current_transcript_id(store: Store, recording_id: str) -> str | None:
    """The id of the transcript that the recording's view and exports use."""
    rows = store.query(
        f"SELECT {CURRENT_TRANSCRIPT_SQL} AS id FROM recordings r WHERE r.id = ?",
        (recording_id,),
    )
    return str(rows[0]["id"]) if rows and rows[0]["id"] else None


def window_of(windows: list[Window], start_s: float, end_s: float) -> Window | None:
    """The window holding the midpoint of a stored result, if any does."""
    middle = (start_s + end_s) / 2
    for n, window in enumerate(windows):
        last = n == len(windows) - 1
        if window.start_s <= middle < window.end_s or (last and middle == window.end_s):
            return window
    return None


def _stretch(
    start_s: float | None, end_s: float | None, duration: float
) -> tuple[float | None, float | None]:
    """The stretch checked against the recording; (None, None) for all of it."""
    if start_s is None and end_s is None:
        return None, None
    start = max(0.0, start_s or 0.0)
    end = duration if end_s is None else min(end_s, duration)
    if start >= duration:
        raise InputError(
            f"Sträckan börjar efter inspelningens slut ({_clock(duration)})."
        )
    if end <= start:
        raise InputError("Sträckan måste sluta efter att den börjar.")
    if start <= 0 and end >= duration:
        return None, None
    return start, end


def _engine_terms(settings: Settings, engine: str) -> tuple[str, float, str]:
    """The model, the price per minute and where the audio goes."""
    if engine == "local":
        return settings.model or "auto", 0.0, ""
    if not settings.openai_api_key and not settings.openai_base_url:
        raise EngineError(
            "OpenAI är inte inställt på servern (PD_OPENAI_API_KEY saknas)."
            " Jämför med den lokala modellen eller be administratören om en nyckel."
        )
    base_url = settings.openai_base_url or OPENAI_BASE_URL
    host = urlparse(base_url).hostname or base_url
    model = settings.openai_model
    return model, price_per_minute_usd(model), host


def _side(store: Store, label: str, row: dict[str, Any], windows: list[Window]) -> Side:
    found: dict[int, list[Line]] = {}
    work_s = cost = 0.0
    for result in store.segment_results(row["id"]):
        window = window_of(windows, result["start_s"], result["end_s"])
        if window is None:
            continue
        found.setdefault(window.idx, []).extend(
            Line.from_dict(item) for item in result["lines"]
        )
        work_s += result["elapsed_s"]
        cost += result["cost_usd"]
    return Side(
        label=label,
        transcript_id=row["id"],
        engine=row["engine"],
        model=row["model"],
        state=row["state"],
        error=row["error"] or "",
        windows=found,
        work_s=work_s,
        cost_usd=round(cost, 6),
        whole=row["start_s"] is None,
    )


def _row(window: Window, a: list[Line] | None, b: list[Line] | None) -> Row:
    if a is None or b is None:
        return Row(window, _plain(a), _plain(b), None)

    a_words = alignment.words(" ".join(line.text for line in a))
    b_words = alignment.words(" ".join(line.text for line in b))
    steps = alignment.align(a_words, b_words)
    a_marks, b_marks = [""] * len(a_words), [""] * len(b_words)
    names = {"equal": "same", "substitute": "sub", "delete": "del", "insert": "ins"}
    for step in steps:
        if step.ref is not None:
            a_marks[step.ref] = names[step.op]
        if step.hyp is not None:
            b_marks[step.hyp] = names[step.op]

    return Row(window, _marked(a, a_marks), _marked(b, b_marks), alignment.score(steps))


def _plain(lines: list[Line] | None) -> list[LineView] | None:
    if lines is None:
        return None
    return [
        LineView(line.start, [Token(t, "") for t in line.text.split()])
        for line in lines
    ]


def _marked(lines: list[Line], marks: list[str]) -> list[LineView]:
    """Give each word of ``lines`` its mark, in order; non-words stay unmarked."""
    pending = iter(marks)
    views = []
    for line in lines:
        tokens = [
            Token(raw, next(pending) if alignment.normalise(raw) else "")
            for raw in line.text.split()
        ]
        views.append(LineView(line.start, tokens))
    return views


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
