"""What the comparison section shows, as HTML and Markdown, from plain data.

Kept apart from the Gradio wiring in ``web.comparison_ui`` so it can be read
and tested without a browser. Figures are only shown with the reason they
mean what they say; a side that is missing, waiting or failed is named.
"""

from __future__ import annotations

import html
import time
from typing import Any

from models.openai_api import price_per_minute_usd
from pipeline.comparison import Comparison, LineView, Plan, Row, Side

ENGINE_LABELS = {"local": "Lokal", "openai": "OpenAI", "edited": "Redigerad"}
STATE_LABELS = {
    "waiting": "Väntar i kön",
    "running": "Transkriberas",
    "done": "Klar",
    "failed": "Misslyckades",
}
MARK_TITLES = {"sub": "utbytt ord", "del": "bara i A", "ins": "bara i B"}
LEGEND = (
    "<p class='pd-legend'>Markerat: <span class='pd-w pd-sub'>utbytt ord</span>"
    " <span class='pd-w pd-del'>bara i A</span>"
    " <span class='pd-w pd-ins'>bara i B</span>. Ord jämförs utan hänsyn till"
    " stora och små bokstäver och skiljetecken.</p>"
)
EMPTY = "<p class='pd-empty'>Ingen jämförelse än för den här inspelningen.</p>"


def confirmation(plan: Plan) -> str:
    """What the user agrees to before the run starts: cost and where audio goes."""
    engine = f"{ENGINE_LABELS[plan.engine]} ({html.escape(plan.model)})"
    span = f"{_clock(plan.windows[0].start_s)}–{_clock(plan.windows[-1].end_s)}"
    parts = [
        f"**{engine}** transkriberar {len(plan.windows)} avsnitt,"
        f" {_minutes(plan.audio_s)} ljud ({span})."
    ]
    if plan.start_s is not None and plan.end_s is not None:
        parts.append(
            f"Du valde {_clock(plan.start_s)}–{_clock(plan.end_s)}; avsnitten delas"
            " vid pauser, så hela de avsnitt som överlappar sträckan tas med."
        )
    if plan.destination:
        price = _usd(price_per_minute_usd(plan.model))
        cost = _usd(plan.estimated_cost_usd)
        parts.append(
            f"**Ljudet skickas till OpenAI ({html.escape(plan.destination)})**"
            f" för transkribering. Beräknad kostnad: **{cost}** ({price} per minut)."
        )
    else:
        parts.append("Ljudet lämnar inte servern. Det kostar inget.")
    parts.append("Vill du starta?")
    return "\n\n".join(parts)


def choice_label(row: dict[str, Any]) -> str:
    """One comparison in the menu: when, which engine, which part, how far."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["created_at"]))
    part = "hela inspelningen"
    if row["start_s"] is not None and row["end_s"] is not None:
        part = f"{_clock(row['start_s'])}–{_clock(row['end_s'])}"
    engine = ENGINE_LABELS.get(row["engine"], row["engine"])
    return f"{when} · {engine} · {part} · {STATE_LABELS.get(row['state'], '')}"


def comparison_html(found: Comparison) -> str:
    """The figures, the reasons behind them and both sides line by line."""
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in notes_of(found))
    return (
        f"<div class='pd-compare' data-comparison='{html.escape(found.id)}'>"
        f"{_figures(found)}{_sides_table(found)}"
        f"<ul class='pd-notes'>{notes}</ul>{LEGEND}{_rows_table(found)}</div>"
    )


def notes_of(found: Comparison) -> list[str]:
    """Plain sentences saying what is missing and what the figures rest on."""
    notes = [_side_note(side, found) for side in (found.a, found.b)]
    notes = [n for n in notes if n]
    score = found.score
    if not found.b.whole:
        notes.append(
            f"Jämförelsen gäller {_clock(found.covered_start_s)}–"
            f"{_clock(found.covered_end_s)}: de avsnitt som överlappar sträckan."
        )
    if score is None:
        failed = "failed" in (found.a.state, found.b.state)
        notes.append(
            "Ingen överensstämmelse räknas, eftersom en sida saknas."
            if failed
            else "Överensstämmelsen räknas när båda sidorna är klara."
        )
        return notes
    if found.scored_windows < len(found.windows):
        notes.append(
            f"Bara {found.scored_windows} av {len(found.windows)} avsnitt finns på"
            " båda sidorna; siffrorna gäller dem."
        )
    if score.ref_words == 0 and score.hyp_words == 0:
        notes.append(
            "Ingen av motorerna hittade några ord här, så det finns inget att jämföra."
        )
    elif score.ref_words == 0:
        notes.append(
            "A har inga ord här, så ordfelsfrekvensen mot A kan inte räknas;"
            " allt i B räknas som tillagt."
        )
    elif score.hyp_words == 0:
        notes.append(
            "B hittade inga ord här, därför stämmer inget överens. Lyssna på"
            " ljudet: är det tyst, eller missade B talet?"
        )
    return notes


def _side_note(side: Side, found: Comparison) -> str:
    name = f"{side.label} ({ENGINE_LABELS.get(side.engine, side.engine)})"
    if side.state == "waiting":
        return f"{name} väntar på att transkriberas."
    if side.state == "running":
        done = len(side.windows)
        return f"{name} transkriberas: {done} av {len(found.windows)} avsnitt klara."
    if side.state == "failed":
        again = " Starta samma jämförelse igen för att försöka på nytt."
        return f"{name} misslyckades: {side.error or 'okänt fel'}.{again}"
    return ""


def _figures(found: Comparison) -> str:
    score = found.score
    if score is None or score.agreement is None:
        return "<p class='pd-agreement pd-agreement-none'>Ingen siffra än.</p>"
    wer = "kan inte räknas" if score.wer is None else _percent(score.wer)
    return (
        f"<p class='pd-agreement' data-agreement='{score.agreement:.4f}'"
        f" data-wer='{'' if score.wer is None else f'{score.wer:.4f}'}'>"
        f"A och B är överens om <b>{_percent(score.agreement)}</b> av orden."
        f" Ordfelsfrekvens (WER) för B med A som facit: <b>{wer}</b>"
        f" ({score.substitutions} utbytta, {score.deletions} saknas i B,"
        f" {score.insertions} tillagda; A har {score.ref_words} ord,"
        f" B {score.hyp_words}).</p>"
    )


def _sides_table(found: Comparison) -> str:
    cells = [_side_cells(side, found) for side in (found.a, found.b)]
    heads = ["A (facit)", "B"]
    rows = [
        ("Motor", 0),
        ("Status", 1),
        ("Arbetstid", 2),
        ("Kostnad", 3),
        ("Inspelningens text", 4),
    ]
    body = "".join(
        f"<tr><th scope='row'>{label}</th><td>{cells[0][n]}</td>"
        f"<td>{cells[1][n]}</td></tr>"
        for label, n in rows
    )
    return (
        "<table class='pd-compare-sides'><thead><tr><th></th>"
        f"<th>{heads[0]}</th><th>{heads[1]}</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _side_cells(side: Side, found: Comparison) -> list[str]:
    engine = ENGINE_LABELS.get(side.engine, side.engine)
    state = STATE_LABELS.get(side.state, side.state)
    if side.state == "running":
        state += f" ({len(side.windows)} av {len(found.windows)} avsnitt)"
    work = "–" if side.engine == "edited" else _seconds(side.work_s)
    cost = "–" if side.engine != "openai" else _usd(side.cost_usd)
    used = "används nu" if found.current == side.label.lower() else ""
    return [
        f"{engine} ({html.escape(side.model)})",
        html.escape(state),
        work,
        cost,
        used,
    ]


def _rows_table(found: Comparison) -> str:
    rows = "".join(_row_html(row, found) for row in found.rows)
    return (
        "<table class='pd-compare-rows'><thead><tr><th>Tid</th><th>A</th>"
        f"<th>B</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _row_html(row: Row, found: Comparison) -> str:
    span = f"{_clock(row.window.start_s)}–{_clock(row.window.end_s)}"
    differences = ""
    if row.score is not None:
        differences = f"<br><small>{row.score.errors} skillnader</small>"
    return (
        f"<tr data-start='{row.window.start_s:.3f}'><td class='pd-time'>{span}"
        f"{differences}</td>{_cell(row.a, found.a)}{_cell(row.b, found.b)}</tr>"
    )


def _cell(lines: list[LineView] | None, side: Side) -> str:
    if lines is None:
        missing = {
            "failed": "Misslyckades – ingen text.",
            "done": "Inget resultat för det här avsnittet.",
        }.get(side.state, "Inte klart än …")
        return f"<td class='pd-missing'>{missing}</td>"
    if not lines:
        return "<td class='pd-silent'>(inga ord)</td>"
    parts = [
        f"<div class='pd-cline'><span class='pd-time'>{_clock(line.start_s)}</span> "
        + " ".join(_token(t.text, t.mark) for t in line.tokens)
        + "</div>"
        for line in lines
    ]
    return "<td>" + "".join(parts) + "</td>"


def _token(text: str, mark: str) -> str:
    escaped = html.escape(text)
    if mark not in MARK_TITLES:
        return escaped
    return f"<span class='pd-w pd-{mark}' title='{MARK_TITLES[mark]}'>{escaped}</span>"


def _percent(share: float) -> str:
    return f"{share * 100:.1f} %".replace(".", ",")


def _usd(amount: float) -> str:
    return f"{amount:.4f} USD".replace(".", ",")


def _seconds(value: float) -> str:
    return f"{value:.1f} s".replace(".", ",")


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min".replace(".", ",")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
