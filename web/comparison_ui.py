"""The comparison section of the transcript view: run, compare, choose, edit.

``build`` adds its components where it is called (inside the transcript view
of ``web.ui``) and follows the open recording through its ``gr.State``. The
comparison on show lives in a server-side ``gr.State`` too, set only after an
ownership check; every handler reads the owner from ``gr.Request`` and checks
again. Before a run, the cost and where the audio goes are shown and must be
confirmed with a second button.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from pipeline import comparison, edits
from pipeline.config import Settings
from pipeline.errors import NotFoundError
from pipeline.storage import Store
from pipeline.worker import Worker
from web import comparison_views as views
from web.handlers import guarded, signed_in

INTRO = (
    "**Jämför motorerna.** Kör den andra motorn på hela inspelningen eller på en"
    " sträcka (billigare med OpenAI) och se texterna sida vid sida, ord för ord."
)
ENGINE_CHOICES = [("Lokal modell", "local"), ("OpenAI", "openai")]
TICK_S = 3.0


def build(store: Store, worker: Worker, settings: Settings, selected: gr.State) -> None:
    """The comparison section; ``selected`` holds the open recording's id."""
    with gr.Accordion("Jämför motorer", open=False, elem_id="pd-compare-section"):
        gr.Markdown(INTRO)
        with gr.Row():
            engine = gr.Radio(
                ENGINE_CHOICES,
                value="openai",
                label="Motor att jämföra med",
                elem_id="pd-compare-engine",
            )
            start = gr.Textbox(
                label="Från (m:ss)", placeholder="början", elem_id="pd-compare-from"
            )
            end = gr.Textbox(
                label="Till (m:ss)", placeholder="slutet", elem_id="pd-compare-to"
            )
        ask = gr.Button("Jämför …", elem_id="pd-compare-ask")
        with gr.Group(visible=False, elem_id="pd-compare-confirm") as confirm:
            terms = gr.Markdown(elem_id="pd-compare-terms")
            with gr.Row():
                yes = gr.Button(
                    "Ja, starta", variant="primary", elem_id="pd-compare-yes"
                )
                no = gr.Button("Avbryt", elem_id="pd-compare-no")
        picked = gr.Dropdown(
            [], label="Jämförelser", interactive=True, elem_id="pd-compare-pick"
        )
        view = gr.HTML(elem_id="pd-compare-view")
        with gr.Row():
            use_a = gr.Button("Använd A som inspelningens text", elem_id="pd-use-a")
            use_b = gr.Button("Använd B som inspelningens text", elem_id="pd-use-b")
        with gr.Accordion("Redigera den sammanfogade texten", open=False):
            base = gr.Radio(
                [("A", "a"), ("B", "b")],
                value="a",
                label="Utgå från (B gäller bara den jämförda delen)",
                elem_id="pd-compare-base",
            )
            fill = gr.Button("Hämta texten", elem_id="pd-compare-fill")
            text = gr.Textbox(
                lines=12,
                label="Text: en rad per replik, [tid] text",
                elem_id="pd-compare-text",
            )
            save = gr.Button(
                "Spara som redigerad transkription",
                variant="primary",
                elem_id="pd-compare-save",
            )
        said = gr.Markdown(elem_id="pd-compare-message")
    current = gr.State("")
    shown = gr.State("")
    asked = gr.State(None)
    timer = gr.Timer(TICK_S)

    def on_recording(recording_id: str, request: gr.Request) -> tuple[Any, ...]:
        owner = signed_in(request)
        hidden = gr.update(visible=False)
        if not recording_id:
            empty = gr.update(choices=[], value=None)
            return (empty, "", "", "", hidden, "", "openai", None)
        rows = comparison.comparisons_of(store, owner, recording_id)
        latest = str(rows[0]["id"]) if rows else ""
        html, key = _render(store, owner, latest)
        other = _other_engine(store, recording_id)
        return (_menu(rows, latest), latest, html, key, hidden, "", other, None)

    def on_pick(comparison_id: str | None, request: gr.Request) -> tuple[Any, ...]:
        owner = signed_in(request)
        if not comparison_id:
            return ("", views.EMPTY, "")
        comparison.owned_comparison(store, owner, comparison_id)
        html, key = _render(store, owner, comparison_id)
        return (comparison_id, html, key)

    def on_ask(
        recording_id: str, chosen: str, first: str, last: str, request: gr.Request
    ) -> tuple[Any, ...]:
        asked = _Asked(
            _opened(recording_id),
            chosen,
            comparison.parse_clock(first or ""),
            comparison.parse_clock(last or ""),
        )
        planned = comparison.plan(
            store,
            settings,
            signed_in(request),
            asked.recording_id,
            engine=asked.engine,
            start_s=asked.start_s,
            end_s=asked.end_s,
        )
        return (gr.update(visible=True), views.confirmation(planned), "", asked)

    def on_yes(
        recording_id: str, asked: _Asked | None, request: gr.Request
    ) -> tuple[Any, ...]:
        owner = signed_in(request)
        if asked is None or asked.recording_id != _opened(recording_id):
            raise NotFoundError("Tryck först på ”Jämför …” och läs vad det kostar.")
        comparison_id = comparison.start(
            store,
            settings,
            owner,
            recording_id,
            engine=asked.engine,
            start_s=asked.start_s,
            end_s=asked.end_s,
        )
        worker.wake()
        rows = comparison.comparisons_of(store, owner, recording_id)
        html, key = _render(store, owner, comparison_id)
        message = "Jämförelsen är startad. Sidan visar den när den är klar."
        hidden = gr.update(visible=False)
        menu = _menu(rows, comparison_id)
        return (hidden, menu, comparison_id, html, key, message, None)

    def on_no() -> tuple[Any, ...]:
        return (gr.update(visible=False), "Avbrutet. Inget ljud skickades.", None)

    def on_tick(comparison_id: str, last: str, request: gr.Request) -> tuple[Any, ...]:
        if not comparison_id:
            return (gr.skip(), gr.skip())
        owner = signed_in(request)
        key = _key(store, comparison_id)
        if key == last:
            return (gr.skip(), gr.skip())
        try:
            return _render(store, owner, comparison_id)
        except NotFoundError:
            # Deleted with its recording a moment ago: say nothing, once.
            return (views.EMPTY, key)

    def on_use_a(comparison_id: str, request: gr.Request) -> tuple[Any, ...]:
        return on_use("a", comparison_id, request)

    def on_use_b(comparison_id: str, request: gr.Request) -> tuple[Any, ...]:
        return on_use("b", comparison_id, request)

    def on_use(side: str, comparison_id: str, request: gr.Request) -> tuple[Any, ...]:
        owner = signed_in(request)
        edits.choose(store, owner, _picked(comparison_id), side)
        html, key = _render(store, owner, comparison_id)
        message = (
            f"{side.upper()} är nu inspelningens text; visningen och nedladdningarna"
            " använder den."
        )
        return (message, html, key)

    def on_fill(comparison_id: str, side: str, request: gr.Request) -> str:
        owner = signed_in(request)
        return edits.merged_text(store, owner, _picked(comparison_id), side)

    def on_save(
        comparison_id: str, edited: str, request: gr.Request
    ) -> tuple[Any, ...]:
        owner = signed_in(request)
        edits.save_edited(store, owner, _picked(comparison_id), edited or "")
        html, key = _render(store, owner, comparison_id)
        message = (
            "Den redigerade texten är sparad och är nu inspelningens text;"
            " visningen och nedladdningarna använder den."
        )
        return (message, html, key)

    hidden_api: dict[str, Any] = {"api_visibility": "private"}
    selected.change(
        guarded(on_recording),
        [selected],
        [picked, current, view, shown, confirm, said, engine, asked],
        **hidden_api,
    )
    picked.input(guarded(on_pick), [picked], [current, view, shown], **hidden_api)
    ask.click(
        guarded(on_ask),
        [selected, engine, start, end],
        [confirm, terms, said, asked],
        **hidden_api,
    )
    yes.click(
        guarded(on_yes),
        [selected, asked],
        [confirm, picked, current, view, shown, said, asked],
        **hidden_api,
    )
    no.click(on_no, None, [confirm, said, asked], **hidden_api)
    timer.tick(
        guarded(on_tick),
        [current, shown],
        [view, shown],
        show_progress="hidden",
        **hidden_api,
    )
    for button, handler in ((use_a, on_use_a), (use_b, on_use_b)):
        button.click(guarded(handler), [current], [said, view, shown], **hidden_api)
    fill.click(guarded(on_fill), [current, base], [text], **hidden_api)
    save.click(guarded(on_save), [current, text], [said, view, shown], **hidden_api)


@dataclass(frozen=True)
class _Asked:
    """The run whose cost was shown; "Ja, starta" starts this, not the fields."""

    recording_id: str
    engine: str
    start_s: float | None
    end_s: float | None


def _render(store: Store, owner: str, comparison_id: str) -> tuple[str, str]:
    """The comparison's HTML and the key that says when it needs redrawing."""
    if not comparison_id:
        return views.EMPTY, ""
    found = comparison.load(store, owner, comparison_id)
    return views.comparison_html(found), _key(store, comparison_id)


def _key(store: Store, comparison_id: str) -> str:
    """Changes whenever a side advances, fails, finishes or is chosen."""
    rows = store.query(
        "SELECT t.id, t.state, r.chosen_transcript_id,"
        " (SELECT COUNT(*) FROM transcript_segments s WHERE s.transcript_id = t.id)"
        "   AS done"
        " FROM comparisons c JOIN recordings r ON r.id = c.recording_id"
        " JOIN transcripts t ON t.id IN (c.reference_id, c.other_id)"
        " WHERE c.id = ? ORDER BY t.id",
        (comparison_id,),
    )
    return (
        comparison_id
        + "|"
        + "|".join(
            f"{r['id']}:{r['state']}:{r['done']}:{r['chosen_transcript_id']}"
            for r in rows
        )
    )


def _other_engine(store: Store, recording_id: str) -> str:
    """The engine the recording's transcript did not use: the one to try."""
    now = comparison.current_transcript_id(store, recording_id)
    engine = store.transcript(now)["engine"] if now else "local"
    return "local" if engine == "openai" else "openai"


def _menu(rows: list[dict[str, Any]], value: str) -> Any:
    choices = [(views.choice_label(r), str(r["id"])) for r in rows]
    return gr.update(choices=choices, value=value or None)


def _opened(recording_id: str) -> str:
    if not recording_id:
        raise NotFoundError("Öppna först en inspelning.")
    return recording_id


def _picked(comparison_id: str) -> str:
    if not comparison_id:
        raise NotFoundError("Välj först en jämförelse.")
    return comparison_id
