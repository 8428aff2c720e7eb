"""The share-link part of the transcript view: create, list and revoke links.

``build`` adds its components where it is called (inside the transcript view
of ``web.ui``) and follows the selected recording through its ``gr.State``.
Handlers read the owner from ``gr.Request`` and check every id again; the
address of a new link is shown once, since only its hash is kept.
"""

from __future__ import annotations

import html
import re
import time
from typing import Any

import gradio as gr

from pipeline import sharing
from pipeline.errors import NotFoundError
from pipeline.storage import Store
from web.handlers import guarded, signed_in

EXPIRY_CHOICES: list[tuple[str, float]] = [
    ("7 dagar", 7),
    ("1 dag", 1),
    ("30 dagar", 30),
    ("tills den återkallas", 0),
]
STATE_LABELS = {"active": "Aktiv", "revoked": "Återkallad", "expired": "Har gått ut"}
INTRO = (
    "**Dela transkriptionen.** En länk visar bara den här texten – och ljudet om"
    " du kryssar i det – för vem som helst som har länken, utan inloggning."
)
# What a browser sends as Origin: a scheme and a host, nothing to escape.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]{1,255}")


def build(store: Store, selected: gr.State) -> None:
    """The share section; ``selected`` holds the open recording's id."""
    with gr.Group(elem_id="pd-share"):
        gr.Markdown(INTRO)
        with gr.Row():
            expiry = gr.Dropdown(
                EXPIRY_CHOICES,
                value=7,
                label="Länken gäller",
                elem_id="pd-share-expiry",
            )
            with_audio = gr.Checkbox(
                False, label="Ta med ljudet", elem_id="pd-share-audio"
            )
            create = gr.Button("Skapa länk", elem_id="pd-share-create")
        fresh = gr.HTML(elem_id="pd-share-new")
        listing = gr.HTML(elem_id="pd-share-list")
        with gr.Row():
            pick = gr.Dropdown(
                [], label="Länk att återkalla", elem_id="pd-share-pick", scale=3
            )
            revoke = gr.Button(
                "Återkalla", variant="stop", elem_id="pd-share-revoke", scale=1
            )
            # The browser's confirm() answer; a js hook can set a component only.
            confirmed = gr.Checkbox(visible="hidden", elem_id="pd-share-confirmed")

    def show(current: str, request: gr.Request) -> tuple[Any, ...]:
        return ("", *_links(store, signed_in(request), current))

    def do_create(
        current: str, days: float, audio: bool, request: gr.Request
    ) -> tuple[Any, ...]:
        owner = signed_in(request)
        transcript_id = _current_transcript(store, owner, current)
        token, _ = sharing.create(
            store,
            owner,
            transcript_id,
            with_audio=bool(audio),
            expires_in_days=float(days or 0),
        )
        return (_fresh_html(token, request), *_links(store, owner, current))

    def do_revoke(
        current: str, link_id: str, confirmed: bool, request: gr.Request
    ) -> tuple[Any, ...]:
        owner = signed_in(request)
        if not link_id:
            raise gr.Error("Välj först vilken länk som ska återkallas.")
        if not confirmed:
            return (gr.skip(), gr.skip(), gr.skip())
        sharing.revoke(store, owner, link_id)
        message = (
            "<p class='pd-share-done'>Länken är återkallad och fungerar inte"
            " längre.</p>"
        )
        return (message, *_links(store, owner, current))

    outputs = [fresh, listing, pick]
    selected.change(guarded(show), [selected], outputs, api_visibility="private")
    create.click(
        guarded(do_create),
        [selected, expiry, with_audio],
        outputs,
        api_visibility="private",
    )
    revoke.click(
        guarded(do_revoke),
        [selected, pick, confirmed],
        outputs,
        js="(s, l) => [s, l,"
        " !!l && confirm('Återkalla länken? Den slutar fungera direkt.')]",
        api_visibility="private",
    )


def _links(store: Store, owner: str, recording_id: str) -> tuple[str, Any]:
    """The list of the recording's links and the choices of the revoke menu."""
    if not recording_id:
        return "", gr.update(choices=[], value=None)
    store.owned_recording(owner, recording_id)
    links = sharing.links_of(store, owner, recording_id)
    if not links:
        return "<p class='pd-empty'>Inga delade länkar.</p>", gr.update(
            choices=[], value=None
        )

    now = time.time()
    rows = "".join(
        f"<tr><td>{_when(link.created_at)}</td><td>{_expiry(link)}</td>"
        f"<td>{'ja' if link.with_audio else 'nej'}</td>"
        f"<td>{STATE_LABELS[link.state(now)]}</td></tr>"
        for link in links
    )
    table = (
        "<table class='pd-share-table'><thead><tr><th>Skapad</th><th>Gäller till</th>"
        f"<th>Ljud</th><th>Status</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    active = [
        (f"skapad {_when(link.created_at)}, gäller till {_expiry(link)}", link.id)
        for link in links
        if link.state(now) == "active"
    ]
    return table, gr.update(choices=active, value=None)


def _current_transcript(store: Store, owner: str, recording_id: str) -> str:
    """The transcript the view shows for the owner's recording."""
    if not recording_id:
        raise NotFoundError("Öppna först en inspelning.")
    store.owned_recording(owner, recording_id)
    row = next(r for r in store.recordings_of(owner) if r["id"] == recording_id)
    if not row["transcript_id"]:
        raise NotFoundError("Inspelningen har ingen transkription än.")
    return str(row["transcript_id"])


def _fresh_html(token: str, request: gr.Request) -> str:
    origin = request.headers.get("origin", "")
    if not _ORIGIN.fullmatch(origin):
        origin = "http://" + request.headers.get("host", "127.0.0.1")
    url = html.escape(f"{origin}/s/{token}")
    return (
        "<div class='pd-share-new' role='status'>"
        "<p><b>Ny länk.</b> Kopiera den nu – den visas bara den här gången.</p>"
        f"<input class='pd-share-url' readonly value='{url}' size='70'> "
        f"<a class='pd-share-open' href='{url}' target='_blank'"
        " rel='noopener noreferrer'>Öppna</a></div>"
    )


def _expiry(link: sharing.ShareLink) -> str:
    return _when(link.expires_at) if link.expires_at else "tills vidare"


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))
