"""The one FastAPI application: login, uploads, audio, exports, health and the UI.

Gradio is mounted at ``/app`` behind the session login; everything else is
plain FastAPI routes on the same event loop, none of which blocks it: file and
database work runs in threads, so ``/healthz`` answers during a 2 GB upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import anyio
from anyio import to_thread
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles

from pipeline import cleanup, exports, recordings, transcript, upload
from pipeline.config import ENGINES, Settings
from pipeline.errors import NotFoundError, PedagogiskError
from pipeline.storage import Store
from pipeline.worker import Worker
from web import metrics
from web.auth import Auth
from web.recorder import make_recorder_router
from web.share_pages import make_share_router

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
CLEANUP_INTERVAL_S = 600.0
# /readyz says "not ready" when less than this is free on the data disk.
READY_MIN_FREE_BYTES = 200 * 1024**2
HEAD = (
    '<link rel="stylesheet" href="/static/pd.css">'
    '<script src="/static/vendor/tus.min.js"></script>'
    '<script src="/static/pd.js"></script>'
    '<script src="/static/pd-record.js"></script>'
)
EXPORT_TYPES = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "json": "application/json",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


def _signed_in(request: Request) -> str:
    """The request's user, or 401: the dependency of every private route."""
    auth: Auth = request.app.state.auth
    return auth.require_user(request)


User = Annotated[str, Depends(_signed_in)]


class Services:
    """What the routes share: settings, the store, the worker, upload counters."""

    def __init__(self, settings: Settings, *, run_worker: bool = True) -> None:
        self.settings = settings
        self.store = Store(settings.data_dir)
        self.worker = Worker(self.store, settings)
        self.upload_stats = upload.UploadStats()
        self.upload_root = settings.data_dir / "uploads"
        self.run_worker = run_worker

    async def accept_upload(
        self, owner: str, upload_id: str, path: Path, metadata: dict[str, str]
    ) -> None:
        """A finished upload becomes the owner's recording and joins the queue."""
        await to_thread.run_sync(self._accept, owner, upload_id, path, metadata)
        self.worker.wake()

    def _accept(
        self, owner: str, upload_id: str, path: Path, metadata: dict[str, str]
    ) -> None:
        name = Path(metadata.get("filename") or "inspelning").name[:200]
        engine = metadata.get("engine", self.settings.engine)
        if engine not in ENGINES:
            engine = self.settings.engine
        recording_id = upload_id.replace("-", "").replace("_", "")[:16] + "u"
        folder = self.store.recording_dir(recording_id)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / ("source" + Path(name).suffix.lower()[:10])
        path.replace(target)
        self.store.add_recording(
            owner=owner,
            title=Path(name).stem or "Inspelning",
            source_name=name,
            source_path=target,
            fingerprint=recordings.fingerprint(target),
            size_bytes=target.stat().st_size,
            recording_id=recording_id,
        )
        self.store.add_transcript(
            recording_id,
            engine=engine,
            model=self.settings.model or "auto",
            language=self.settings.language,
        )
        log.info("upload %s became recording %s (%s)", upload_id, recording_id, engine)


def create_app(settings: Settings, *, run_worker: bool = True) -> FastAPI:
    """Build the whole application around one data directory."""
    import gradio as gr

    from web.ui import build_ui

    services = Services(settings, run_worker=run_worker)
    store = services.store

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services.run_worker:
            services.worker.start()
        sweeper = asyncio.create_task(_sweep_forever(services))
        try:
            yield
        finally:
            sweeper.cancel()
            await to_thread.run_sync(services.worker.stop)

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services

    auth = Auth(store, secure_cookies=settings.secure_cookies)
    app.state.auth = auth
    user_of = auth.current_user
    require_user = auth.require_user

    app.include_router(auth.router)
    app.include_router(
        upload.make_upload_router(
            services.upload_root,
            owner_of=require_user,
            on_complete=services.accept_upload,
            max_size=settings.max_upload_bytes,
            ttl_s=settings.upload_expiry_hours * 3600,
            stats=services.upload_stats,
            prefix="/api/uploads",
        ),
        dependencies=[Depends(auth.require_csrf)],
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(make_share_router(store))
    app.include_router(make_recorder_router(services))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        problems = []
        try:
            store.query("SELECT 1")
        except PedagogiskError as exc:
            problems.append(exc.message)
        free = shutil.disk_usage(settings.data_dir).free
        if free < READY_MIN_FREE_BYTES:
            problems.append("Disken är nästan full.")
        body = {"status": "ok" if not problems else "fel", "problems": problems}
        return JSONResponse(body, status_code=200 if not problems else 503)

    @app.get("/metrics")
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(
            metrics.render(store, services.upload_stats),
            media_type="text/plain; version=0.0.4",
        )

    @app.get("/api/recordings/{recording_id}/audio")
    def audio(recording_id: str, user: User) -> FileResponse:
        rec = _owned(store, user, recording_id)
        source = Path(rec["source_path"])
        if rec["audio_deleted_at"] or not source.is_file():
            raise HTTPException(404, "Ljudet finns inte längre.")
        kind = mimetypes.guess_type(rec["source_name"])[0] or "application/octet-stream"
        return FileResponse(source, media_type=kind)

    @app.delete(
        "/api/recordings/{recording_id}",
        status_code=204,
        dependencies=[Depends(auth.require_csrf)],
    )
    def delete_recording(recording_id: str, user: User) -> None:
        _owned(store, user, recording_id)
        store.delete_recording(recording_id)
        log.info("recording %s deleted by its owner", recording_id)

    @app.get("/api/transcripts/{transcript_id}/export.{fmt}")
    def export(transcript_id: str, fmt: str, user: User) -> Response:
        if fmt not in EXPORT_TYPES:
            raise HTTPException(404, "Okänt format.")
        row = _owned_transcript(store, user, transcript_id)
        rec = store.recording(row["recording_id"])
        lines = transcript.lines(store, transcript_id)
        if fmt == "docx":
            body: bytes | str = exports.docx_bytes(lines, rec["title"])
        else:
            meta = {
                "recording": rec["title"],
                "engine": row["engine"],
                "model": row["model"],
                "language": row["language"],
            }
            body = exports.render(fmt, lines, meta)
        disposition = exports.attachment_header(rec["title"], fmt)
        return Response(
            body,
            media_type=EXPORT_TYPES[fmt],
            headers={"Content-Disposition": disposition},
        )

    @app.middleware("http")
    async def login_first(request: Request, call_next: Any) -> Response:
        # The page itself sends a visitor to the login form; Gradio's API
        # routes keep answering 401 to programs.
        if request.url.path in ("/app", "/app/") and request.method == "GET":
            if user_of(request) is None:
                return RedirectResponse("/login?next=/app/", status_code=303)
        response: Response = await call_next(request)
        return response

    @app.get("/")
    def root(request: Request) -> RedirectResponse:
        target = "/app/" if user_of(request) else "/login"
        return RedirectResponse(target, status_code=303)

    ui = build_ui(store, services.worker, settings)
    return gr.mount_gradio_app(
        app,
        ui,
        path="/app",
        auth_dependency=user_of,
        head=HEAD,
        footer_links=[],
        show_error=True,
    )


def _owned(store: Store, user: str, recording_id: str) -> dict[str, Any]:
    try:
        return store.owned_recording(user, recording_id)
    except NotFoundError as exc:
        raise HTTPException(404, exc.message) from exc


def _owned_transcript(store: Store, user: str, transcript_id: str) -> dict[str, Any]:
    try:
        row = store.transcript(transcript_id)
        store.owned_recording(user, row["recording_id"])
    except NotFoundError as exc:
        raise HTTPException(404, "Transkriptionen finns inte.") from exc
    return row


async def _sweep_forever(services: Services) -> None:
    """Every few minutes: expired uploads and audio past its retention go."""
    while True:
        try:
            await to_thread.run_sync(_sweep, services)
        except Exception:
            log.exception("cleanup failed; trying again later")
        await anyio.sleep(CLEANUP_INTERVAL_S)


def _sweep(services: Services) -> None:
    settings = services.settings
    upload.purge_expired(
        services.upload_root, ttl_s=settings.upload_expiry_hours * 3600
    )
    cleanup.purge_expired_audio(services.store, settings.audio_retention_days)
