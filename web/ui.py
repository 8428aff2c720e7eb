"""The Gradio Blocks: the user's recordings, live progress and the transcript view.

Every handler reads the logged-in user from ``gr.Request`` and only ever
touches that user's rows; ids coming from the browser are checked again.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from pipeline.config import Settings
from pipeline.storage import Store
from pipeline.worker import Worker
from web import recorder, sharing_ui, views
from web.comparison_ui import build as build_comparison
from web.handlers import guarded, signed_in

log = logging.getLogger(__name__)

UPLOAD_WIDGET = """
<div id="pd-upload" class="pd-upload">
  <label class="pd-file">Välj en inspelning (ljud eller video, upp till 4 GB)
    <input id="pd-file" type="file" accept="audio/*,video/*,.m4a,.webm,.mkv">
  </label>
  <label class="pd-openai"><input id="pd-engine-openai" type="checkbox">
    Använd OpenAI i stället för den lokala modellen.
    <strong>Ljudet skickas då till OpenAI.</strong>
  </label>
  <div class="pd-bar"><div id="pd-bar-fill" class="pd-bar-fill"></div></div>
  <div id="pd-upload-status" class="pd-upload-status" role="status">
    Ingen uppladdning pågår. Utan OpenAI lämnar ljudet aldrig servern.
  </div>
  <button type="button" id="pd-pause" class="pd-button" disabled>Pausa</button>
  <button type="button" id="pd-resume" class="pd-button" disabled>Fortsätt</button>
</div>
"""


def build_ui(store: Store, worker: Worker, settings: Settings) -> gr.Blocks:
    """The app's one page; ``web.server`` mounts it behind the login."""
    with gr.Blocks(title="PedagogiskDialog") as ui:
        with gr.Row():
            gr.Markdown("# PedagogiskDialog")
            who = gr.HTML(elem_id="pd-who")
        disk = gr.Markdown(elem_id="pd-disk")
        note = gr.Markdown(elem_id="pd-note")
        gr.HTML(UPLOAD_WIDGET)
        gr.HTML(recorder.WIDGET)
        table = gr.Dataframe(
            headers=views.TABLE_HEADERS,
            interactive=False,
            label="Dina inspelningar (klicka på en rad för att öppna den)",
            elem_id="pd-recordings",
        )
        ids = gr.State([])
        selected = gr.State("")
        with gr.Column(visible=False, elem_id="pd-detail") as detail:
            status = gr.Markdown(elem_id="pd-status")
            player = gr.HTML(elem_id="pd-player")
            with gr.Row():
                title = gr.Textbox(label="Titel", scale=3, elem_id="pd-title")
                rename = gr.Button("Byt namn", scale=1, elem_id="pd-rename")
                retry = gr.Button("Försök igen", scale=1, elem_id="pd-retry")
                delete = gr.Button(
                    "Ta bort", variant="stop", scale=1, elem_id="pd-delete"
                )
                # The browser's confirm() answer travels in this hidden box:
                # a js hook cannot change a gr.State input, only a component's.
                confirmed = gr.Checkbox(visible="hidden", elem_id="pd-confirmed")
            downloads = gr.HTML(elem_id="pd-downloads")
            lines = gr.HTML(elem_id="pd-transcript")
            sharing_ui.build(store, selected)
            build_comparison(store, worker, settings, selected)
        # Outside the detail column: it must still show after a deletion.
        message = gr.Markdown(elem_id="pd-message")

        def refresh(current: str, request: gr.Request) -> tuple[Any, ...]:
            owner = signed_in(request)
            found = views.listing(store, worker, owner, settings.audio_retention_days)
            if current not in found.ids:
                current = ""
            return (
                found.rows,
                found.ids,
                views.disk_label(store),
                _note(worker),
                *_detail(current, owner),
            )

        def _detail(current: str, owner: str) -> tuple[Any, ...]:
            if not current:
                return (gr.update(visible=False), "", "", "", gr.update(visible=False))
            return (
                gr.update(visible=True),
                views.detail_markdown(store, worker, owner, current),
                views.transcript_html(store, owner, current),
                views.downloads_html(store, owner, current),
                gr.update(visible=views.has_failed(store, owner, current)),
            )

        def choose(
            found_ids: list[str], evt: gr.SelectData, request: gr.Request
        ) -> tuple[Any, ...]:
            owner = signed_in(request)
            row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
            if not isinstance(row, int) or not 0 <= row < len(found_ids):
                hidden = gr.update(visible=False)
                return ("", hidden, "", "", "", hidden, "", "")
            recording_id = found_ids[row]
            rec = store.owned_recording(owner, recording_id)
            return (
                recording_id,
                *_detail(recording_id, owner),
                views.player_html(store, owner, recording_id),
                rec["title"],
            )

        def do_rename(current: str, new_title: str, request: gr.Request) -> str:
            owner = signed_in(request)
            cleaned = new_title.strip()
            if not cleaned or len(cleaned) > 200:
                return "Titeln måste vara 1–200 tecken."
            store.owned_recording(owner, current)
            store.rename_recording(current, cleaned)
            return f"Bytte namn till ”{cleaned}”."

        def do_delete(
            current: str, confirmed: bool, request: gr.Request
        ) -> tuple[str, str]:
            if not current or not confirmed:
                return current, ""
            owner = signed_in(request)
            rec = store.owned_recording(owner, current)
            store.delete_recording(current)
            log.info("recording %s deleted by its owner", current)
            return "", f"Inspelningen ”{rec['title']}” är borttagen."

        def do_retry(current: str, request: gr.Request) -> str:
            owner = signed_in(request)
            rec = store.owned_recording(owner, current)
            row = next(r for r in store.recordings_of(owner) if r["id"] == current)
            if row["transcript_state"] != "failed" and rec["state"] != "failed":
                return "Det finns inget misslyckat att försöka igen."
            if rec["state"] == "failed":
                store.set_recording_state(current, "new")
            store.set_transcript_state(row["transcript_id"], "waiting")
            worker.wake()
            return "Försöker igen."

        outputs_all = [table, ids, disk, note, detail, status, lines, downloads, retry]
        timer = gr.Timer(2.0)
        timer.tick(refresh, [selected], outputs_all, show_progress="hidden")
        ui.load(refresh, [selected], outputs_all)
        ui.load(_who, None, who)
        table.select(
            choose,
            [ids],
            [selected, detail, status, lines, downloads, retry, player, title],
        )
        rename.click(guarded(do_rename), [selected, title], message)
        delete.click(
            guarded(do_delete),
            [selected, confirmed],
            [selected, message],
            js="(s) => [s,"
            " confirm('Ta bort inspelningen och all dess text och ljud?')]",
        )
        retry.click(guarded(do_retry), [selected], message)
    return ui


def _who(request: gr.Request) -> str:
    owner = signed_in(request)
    return (
        f"<div class='pd-who'>Inloggad som <b>{owner}</b> · "
        "<form method='post' action='/logout' class='pd-logout'>"
        "<input type='hidden' name='csrf_token' class='pd-csrf'>"
        "<button type='submit'>Logga ut</button></form></div>"
    )


def _note(worker: Worker) -> str:
    return f"**Obs:** {worker.engine_note}" if worker.engine_note else ""
