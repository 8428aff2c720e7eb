"""The pages a share link opens: plain HTML from FastAPI, no login, no Gradio.

``/s/{token}`` shows one transcript, ``/s/{token}/export.{fmt}`` downloads it
and ``/s/{token}/audio`` plays its audio (with range requests) when the owner
allowed that. Each request goes through ``sharing.resolve`` first, and every
later lookup uses only the ids the link row holds, so nothing a visitor sends
besides the token decides what is shown. The token never reaches the Gradio
app, and these pages set no cookie and load no script.
"""

from __future__ import annotations

import html
import logging
import mimetypes
import string
import time
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from models.engine import Line
from pipeline import exports, sharing, transcript
from pipeline.errors import NotFoundError, PedagogiskError
from pipeline.exports import clock
from pipeline.storage import Store

log = logging.getLogger(__name__)

EXPORT_TYPES = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}
NO_AUDIO_MESSAGE = "Ljudet delas inte via den här länken."
AUDIO_GONE_MESSAGE = "Ljudet finns inte längre."
UNKNOWN_FORMAT_MESSAGE = "Det formatet finns inte att ladda ner."
# No script, no frames, nothing from elsewhere; the address (which holds the
# token) is never sent on as a referrer.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline';"
    " media-src 'self'; form-action 'none'; frame-ancestors 'none';"
    " base-uri 'none'",
}
PAGE = string.Template(
    """<!doctype html>
<html lang="sv">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>$title – PedagogiskDialog</title>
<style>
body { font-family: system-ui, sans-serif; margin: 0; color: #1f2328; }
main { max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
.pd-meta, .pd-note { color: #57606a; }
audio { width: 100%; margin: 1rem 0; }
.pd-lines { list-style: none; padding: 0; line-height: 1.5; }
.pd-lines li { margin: 0 0 .4rem; }
.pd-time { color: #57606a; font-variant-numeric: tabular-nums; margin-right: .5rem; }
</style>
</head>
<body>
<main>
$body
</main>
</body>
</html>
"""
)


def make_share_router(store: Store) -> APIRouter:
    """The public share-link routes over one store."""
    router = APIRouter(prefix="/s")

    @router.get("/{token}", response_class=HTMLResponse)
    def page(token: str) -> Response:
        try:
            link = sharing.resolve(store, token)
            body = _transcript_body(store, link, token)
        except PedagogiskError as exc:
            return error_page(exc)
        return HTMLResponse(body, headers=HEADERS)

    @router.get("/{token}/audio")
    def audio(token: str) -> Response:
        try:
            link = sharing.resolve(store, token)
            source = _audio_path(store, link)
        except PedagogiskError as exc:
            return error_page(exc)
        rec = store.recording(link.recording_id)
        kind = mimetypes.guess_type(rec["source_name"])[0] or "application/octet-stream"
        return FileResponse(source, media_type=kind, headers=HEADERS)

    @router.get("/{token}/export.{fmt}")
    def export(token: str, fmt: str) -> Response:
        try:
            link = sharing.resolve(store, token)
            if fmt not in EXPORT_TYPES:
                raise NotFoundError(UNKNOWN_FORMAT_MESSAGE)
            rec = store.recording(link.recording_id)
        except PedagogiskError as exc:
            return error_page(exc)
        lines = transcript.lines(store, link.transcript_id)
        body = exports.render(fmt, lines, {"recording": rec["title"]})
        header = exports.attachment_header(rec["title"], fmt)
        disposition = {"Content-Disposition": header}
        return Response(
            body, media_type=EXPORT_TYPES[fmt], headers=HEADERS | disposition
        )

    return router


def error_page(exc: PedagogiskError) -> HTMLResponse:
    """A Swedish page saying why the link shows nothing, with the error's status."""
    status = exc.status if exc.status in (404, 410) else 500
    if status == 500:
        log.error("share page failed", exc_info=exc)
    body = (
        "<h1>Länken fungerar inte</h1>"
        f"<p>{html.escape(exc.message)}</p>"
        "<p class='pd-note'>Delade länkar visar en enda transkription och"
        " kan återkallas när som helst av den som delade dem.</p>"
    )
    page = PAGE.substitute(title="Länken fungerar inte", body=body)
    return HTMLResponse(page, status_code=status, headers=HEADERS)


def _transcript_body(store: Store, link: sharing.ShareLink, token: str) -> str:
    rec = store.recording(link.recording_id)
    title = html.escape(rec["title"])
    created = time.strftime("%Y-%m-%d", time.localtime(rec["created_at"]))
    facts = ["Delad transkription", created]
    if rec["duration_s"]:
        facts.append(_duration(rec["duration_s"]))

    downloads = " ".join(
        f"<a href='{token}/export.{fmt}' download>{fmt.upper()}</a>"
        for fmt in EXPORT_TYPES
    )
    parts = [
        f"<h1>{title}</h1>",
        f"<p class='pd-meta'>{' · '.join(facts)}</p>",
        _player(store, link, token),
        f"<p class='pd-downloads'>Ladda ner texten: {downloads}</p>",
        _lines_html(transcript.lines(store, link.transcript_id)),
        "<p class='pd-note'>Skrivskyddad länk. Den som delade den kan återkalla"
        " den när som helst.</p>",
    ]
    return PAGE.substitute(title=title, body="\n".join(parts))


def _lines_html(lines: list[Line]) -> str:
    if not lines:
        return "<p>Ingen text.</p>"
    items = "".join(
        f"<li><span class='pd-time'>{clock(line.start)[:8]}</span>"
        f"{html.escape(line.text)}</li>"
        for line in lines
    )
    return f"<ol class='pd-lines'>{items}</ol>"


def _player(store: Store, link: sharing.ShareLink, token: str) -> str:
    if not link.with_audio:
        return ""
    try:
        _audio_path(store, link)
    except NotFoundError:
        return f"<p class='pd-note'>{AUDIO_GONE_MESSAGE}</p>"
    return f"<audio controls preload='metadata' src='{token}/audio'></audio>"


def _audio_path(store: Store, link: sharing.ShareLink) -> Path:
    if not link.with_audio:
        raise NotFoundError(NO_AUDIO_MESSAGE)
    rec = store.recording(link.recording_id)
    source = Path(rec["source_path"])
    if rec["audio_deleted_at"] or not source.is_file():
        raise NotFoundError(AUDIO_GONE_MESSAGE)
    return source


def _duration(seconds: float) -> str:
    minutes = max(1, int(round(seconds / 60)))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
