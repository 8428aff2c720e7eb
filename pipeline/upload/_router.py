"""The tus endpoints: a FastAPI router and the requests it answers."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

import anyio
from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.requests import ClientDisconnect

from pipeline.errors import PedagogiskError, StorageError
from pipeline.storage import disk_error
from pipeline.upload._body import _pump, _settle
from pipeline.upload._files import (
    DEFAULT_TTL_S,
    _check_not_expired,
    _Info,
    _info_path,
    _owner_dir,
    _read_info,
    _remove,
    _Upload,
    _upload_paths,
    _write_info,
)
from pipeline.upload._handover import CompletionHandler, _hand_over
from pipeline.upload._protocol import (
    CHECKSUM_ALGORITHMS,
    CONTENT_TYPE_MESSAGE,
    DROPPED_MESSAGE,
    IDLE_MESSAGE,
    LOCKED_MESSAGE,
    NO_ROOM_MESSAGE,
    OFFSET_MESSAGE,
    TOO_LARGE_MESSAGE,
    TOO_LONG_MESSAGE,
    TUS_EXTENSIONS,
    TUS_VERSION,
    VERSION_MESSAGE,
    UploadError,
    _bad_header,
    _checked_metadata,
    _header_int,
    _is_offset_stream,
    _parse_checksum,
    _size_text,
)
from pipeline.upload._stats import UploadStats

# One logger for the whole package, so log lines still name pipeline.upload.
log = logging.getLogger(__package__)

DEFAULT_MAX_SIZE = 4 * 1024**3
DEFAULT_RESERVE_BYTES = 512 * 1024**2
DEFAULT_COMMIT_BYTES = 64 * 1024**2
DEFAULT_IDLE_TIMEOUT_S = 30.0

# Writers beyond a few only queue for the same disk, and every extra thread
# competes with the event loop for the GIL.
DISK_THREADS = 4
DELETE_WAIT_S = 2.0


def make_upload_router(
    root: Path,
    *,
    owner_of: Callable[[Request], str],
    on_complete: CompletionHandler,
    max_size: int = DEFAULT_MAX_SIZE,
    ttl_s: float = DEFAULT_TTL_S,
    reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    commit_bytes: int = DEFAULT_COMMIT_BYTES,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    stats: UploadStats | None = None,
    prefix: str = "/uploads",
) -> APIRouter:
    """A tus 1.0 endpoint at ``prefix`` that stores uploads under ``root``.

    ``owner_of`` names the owner of a request; ``on_complete(owner, upload_id,
    path, metadata)`` runs once when the last byte is durable, while the upload
    is still locked, and should move the file out of ``root``. A plain function
    runs on the event loop, so keep it short or make it ``async``. Unfinished
    uploads expire ``ttl_s`` after their last byte; ``purge_expired`` removes
    them. A body that is interrupted keeps what was received, and at least every
    ``commit_bytes`` of a body with a Content-Length become durable.
    """
    endpoints = _Endpoints(
        root=Path(root),
        owner_of=owner_of,
        on_complete=on_complete,
        max_size=max_size,
        ttl_s=ttl_s,
        reserve_bytes=reserve_bytes,
        commit_bytes=commit_bytes,
        idle_timeout_s=idle_timeout_s,
        stats=UploadStats() if stats is None else stats,
        disk=anyio.CapacityLimiter(DISK_THREADS),
    )
    router = APIRouter(prefix=prefix)
    _add_routes(router, endpoints)
    return router


def _add_routes(router: APIRouter, endpoints: _Endpoints) -> None:
    """Route the tus methods, on the collection and on each upload."""
    for path in ("", "/"):
        router.add_api_route(path, _guarded(endpoints.create), methods=["POST"])
        router.add_api_route(
            path, _guarded(endpoints.options, versioned=False), methods=["OPTIONS"]
        )
    item = "/{upload_id}"
    router.add_api_route(item, _guarded(endpoints.head), methods=["HEAD"])
    router.add_api_route(item, _guarded(endpoints.patch), methods=["PATCH"])
    router.add_api_route(item, _guarded(endpoints.delete), methods=["DELETE"])
    router.add_api_route(
        item, _guarded(endpoints.options, versioned=False), methods=["OPTIONS"]
    )


@dataclass
class _Endpoints:
    """The tus requests, bound to one root and one set of limits."""

    root: Path
    owner_of: Callable[[Request], str]
    on_complete: CompletionHandler
    max_size: int
    ttl_s: float
    reserve_bytes: int
    commit_bytes: int
    idle_timeout_s: float
    stats: UploadStats
    disk: anyio.CapacityLimiter

    async def options(self, request: Request) -> Response:
        headers = {
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(self.max_size),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
        }
        return Response(status_code=204, headers=headers)

    async def create(self, request: Request) -> Response:
        owner = self.owner_of(request)
        length = _header_int(request, "Upload-Length")
        deferred = request.headers.get("Upload-Defer-Length")
        if (length is None) == (deferred is None) or deferred not in (None, "1"):
            raise _bad_header("Upload-Length")
        metadata = _checked_metadata(request.headers.get("Upload-Metadata", ""))
        self._check_size(length or 0)
        declared = _header_int(request, "Content-Length") or 0
        if declared > (self.max_size if length is None else length):
            raise UploadError(413, TOO_LONG_MESSAGE)

        upload_id, info = await to_thread.run_sync(
            self._create_files, owner, length, metadata
        )
        log.info("upload %s created, %s bytes", upload_id, length)
        headers = {"Location": f"{request.url.path.rstrip('/')}/{upload_id}"}
        if _is_offset_stream(request) or length == 0:
            try:
                info = await self._append(request, owner, upload_id, 0)
            except PedagogiskError as exc:
                return _error_response(exc, headers)
            headers["Upload-Offset"] = str(info.offset)

        return Response(status_code=201, headers=headers | _expiry_headers(info))

    async def head(self, request: Request, upload_id: str) -> Response:
        _, info_path = _upload_paths(self.root, self.owner_of(request), upload_id)
        info = await to_thread.run_sync(_read_info, info_path)
        _check_not_expired(info)

        headers = {"Upload-Offset": str(info.offset), "Cache-Control": "no-store"}
        if info.length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(info.length)
        if info.metadata:
            headers["Upload-Metadata"] = info.metadata
        return Response(status_code=200, headers=headers | _expiry_headers(info))

    async def patch(self, request: Request, upload_id: str) -> Response:
        owner = self.owner_of(request)
        if not _is_offset_stream(request):
            raise UploadError(415, CONTENT_TYPE_MESSAGE)
        offset = _header_int(request, "Upload-Offset")
        if offset is None:
            raise _bad_header("Upload-Offset")

        info = await self._append(request, owner, upload_id, offset)
        headers = {"Upload-Offset": str(info.offset)} | _expiry_headers(info)
        return Response(status_code=204, headers=headers)

    async def delete(self, request: Request, upload_id: str) -> Response:
        data, info_path = _upload_paths(self.root, self.owner_of(request), upload_id)
        # A client that cancels drops its PATCH first; give that request time
        # to commit and let go of the lock.
        with anyio.move_on_after(DELETE_WAIT_S):
            while not await to_thread.run_sync(_remove, data, info_path):
                await anyio.sleep(0.1)
            log.info("upload %s deleted", upload_id)
            return Response(status_code=204)
        raise UploadError(423, LOCKED_MESSAGE)

    async def _append(
        self, request: Request, owner: str, upload_id: str, offset: int
    ) -> _Info:
        """Append the request body at ``offset``; the common part of PATCH/POST."""
        checksum = _parse_checksum(request.headers.get("Upload-Checksum"))
        new_length = _header_int(request, "Upload-Length")
        declared = _header_int(request, "Content-Length")
        data, info_path = _upload_paths(self.root, owner, upload_id)
        upload = await to_thread.run_sync(_Upload.open, data, info_path, self.ttl_s)
        try:
            await self._check_append(upload, offset, new_length, declared)
            if not upload.info.completed:
                await self._receive(request, upload, checksum, declared)
            # Notify again only while the bytes are still ours: a completed
            # upload whose file has moved was handed over already.
            if upload.info.completed and not upload.info.notified and upload.fd >= 0:
                await self._notify(owner, upload_id, upload)
            return upload.info
        finally:
            with anyio.CancelScope(shield=True):
                await to_thread.run_sync(upload.close)

    async def _check_append(
        self,
        upload: _Upload,
        offset: int,
        new_length: int | None,
        declared: int | None,
    ) -> None:
        info = upload.info
        _check_not_expired(info)
        if offset != info.offset:
            raise UploadError(409, OFFSET_MESSAGE.format(offset=info.offset))
        if new_length is not None and new_length != info.length:
            if info.length is not None or new_length < info.offset:
                raise _bad_header("Upload-Length")
            self._check_size(new_length)
            await to_thread.run_sync(self._check_room, new_length - info.offset)
            upload.info = dataclasses.replace(info, length=new_length)
        if declared is not None and declared > self._remaining(upload.info):
            raise UploadError(413, TOO_LONG_MESSAGE)

    async def _receive(
        self,
        request: Request,
        upload: _Upload,
        checksum: tuple[str, bytes] | None,
        declared: int | None,
    ) -> None:
        """Stream the body into ``upload`` and commit it, or leave the offset be."""
        # Only a body with a known length can be committed as it arrives: one
        # without could still turn out too long, and a checksum covers it whole.
        commit_bytes = self.commit_bytes if declared is not None else 0
        await to_thread.run_sync(upload.begin, checksum, commit_bytes)
        self.stats.in_progress += 1
        try:
            limit = self._remaining(upload.info)
            await _pump(
                request, upload, limit, self.disk, self.idle_timeout_s, self.stats
            )
            await to_thread.run_sync(upload.finish, limiter=self.disk)
        except (ClientDisconnect, TimeoutError) as exc:
            await _settle(upload.keep_received)
            log.info("upload %s interrupted at %d", upload.data.name, upload.written)
            if isinstance(exc, TimeoutError):
                raise UploadError(408, IDLE_MESSAGE) from exc
            raise UploadError(400, DROPPED_MESSAGE) from exc
        except OSError as exc:
            await _settle(upload.keep_received)
            raise disk_error(exc) from exc
        except anyio.get_cancelled_exc_class():
            await _settle(upload.keep_received)
            raise
        except BaseException:
            await _settle(upload.rollback)
            raise
        finally:
            self.stats.in_progress -= 1

    async def _notify(self, owner: str, upload_id: str, upload: _Upload) -> None:
        await _hand_over(self.on_complete, owner, upload_id, upload)
        self.stats.completed += 1

    def _create_files(
        self, owner: str, length: int | None, metadata: str
    ) -> tuple[str, _Info]:
        folder = _owner_dir(self.root, owner)
        upload_id = secrets.token_urlsafe(16)
        data = folder / upload_id
        info = _Info(length, 0, metadata, time.time() + self.ttl_s, owner=owner)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._check_room(length or 0)
            os.close(os.open(data, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            _write_info(_info_path(data), info)
        except OSError as exc:
            data.unlink(missing_ok=True)
            raise disk_error(exc) from exc
        return upload_id, info

    def _check_size(self, length: int) -> None:
        if length > self.max_size:
            limit = _size_text(self.max_size)
            raise UploadError(413, TOO_LARGE_MESSAGE.format(limit=limit))

    def _check_room(self, needed: int) -> None:
        free = shutil.disk_usage(self.root).free
        if needed > free - self.reserve_bytes:
            log.warning("upload of %d bytes refused, %d bytes free", needed, free)
            raise StorageError(NO_ROOM_MESSAGE)

    def _remaining(self, info: _Info) -> int:
        length = self.max_size if info.length is None else info.length
        return length - info.offset


def _guarded(
    endpoint: Callable[..., Awaitable[Response]], *, versioned: bool = True
) -> Callable[..., Awaitable[Response]]:
    """Check Tus-Resumable, turn our errors into responses, stamp the version."""

    @functools.wraps(endpoint)
    async def run(**kwargs: Any) -> Response:
        request: Request = kwargs["request"]
        try:
            if versioned and request.headers.get("Tus-Resumable") != TUS_VERSION:
                raise UploadError(412, VERSION_MESSAGE)
            response = await endpoint(**kwargs)
        except PedagogiskError as exc:
            if exc.status == 500:
                log.error("upload request failed", exc_info=exc)
            response = _error_response(exc)
        response.headers["Tus-Resumable"] = TUS_VERSION
        return response

    return run


def _error_response(
    exc: PedagogiskError, headers: dict[str, str] | None = None
) -> Response:
    response = PlainTextResponse(exc.message, status_code=exc.status, headers=headers)
    if exc.status == 412:
        response.headers["Tus-Version"] = TUS_VERSION
    return response


def _expiry_headers(info: _Info) -> dict[str, str]:
    if info.completed:
        return {}
    return {"Upload-Expires": formatdate(info.expires, usegmt=True)}
