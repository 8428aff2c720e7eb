"""Resumable uploads: the server side of the tus 1.0 protocol.

``make_upload_router`` gives a FastAPI router that takes a recording in pieces,
straight to disk, and picks up where a dropped connection, a reloaded page or a
restarted server left off. Extensions: creation, creation-with-upload,
creation-defer-length, termination, expiration and checksum (sha1, md5).
A second PATCH to an upload that is still receiving gets 423 Locked, which tus
clients retry; a PATCH at the wrong offset gets 409.

Layout under ``root``::

    <owner-hash>/<upload-id>        the bytes received so far
    <owner-hash>/<upload-id>.info   JSON: length, offset, metadata, expiry, owner

The info file is the truth. Its offset counts only bytes that were fsync'ed
before the file was replaced, so a new process, even after ``kill -9``, resumes
at that offset and drops whatever an interrupted request left past it. A PATCH
that is refused therefore never moves the offset. Each owner has a folder of its
own, so another owner's upload ids answer 404.

``end_stalled`` is the server's side of a deferred length: an upload whose
client went away before it could say how long the file is (a browser recording
whose tab was closed) is ended at the offset it reached and handed over.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import errno
import fcntl
import functools
import hashlib
import inspect
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

import anyio
from anyio import to_thread
from anyio.streams.memory import MemoryObjectReceiveStream
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.requests import ClientDisconnect

from pipeline.errors import NotFoundError, PedagogiskError, StorageError
from pipeline.storage import disk_error

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = (
    "creation,creation-with-upload,creation-defer-length,termination,"
    "expiration,checksum"
)
CHECKSUM_ALGORITHMS = ("sha1", "md5")
OFFSET_TYPE = "application/offset+octet-stream"

DEFAULT_MAX_SIZE = 4 * 1024**3
DEFAULT_TTL_S = 24 * 3600.0
DEFAULT_RESERVE_BYTES = 512 * 1024**2
DEFAULT_COMMIT_BYTES = 64 * 1024**2
DEFAULT_IDLE_TIMEOUT_S = 30.0

MB = 1024**2
BLOCK_BYTES = 256 * 1024
QUEUE_BLOCKS = 2
# Writers beyond a few only queue for the same disk, and every extra thread
# competes with the event loop for the GIL.
DISK_THREADS = 4
MAX_METADATA_CHARS = 8192
DELETE_WAIT_S = 2.0
_WRITE_BACK_NOW = getattr(os, "POSIX_FADV_DONTNEED", None)
_ID = re.compile(r"[A-Za-z0-9_-]{22}")
_NUMBER = re.compile(r"[0-9]{1,19}")

NOT_FOUND_MESSAGE = "Uppladdningen finns inte. Den kan ha tagits bort; börja om."
EXPIRED_MESSAGE = (
    "Uppladdningen stod stilla för länge och har tagits bort. Börja om med filen."
)
LOCKED_MESSAGE = (
    "Uppladdningen tar redan emot data från en annan anslutning. "
    "Vänta en stund och försök igen."
)
OFFSET_MESSAGE = "Servern har {offset} byte av filen. Fortsätt därifrån."
TOO_LARGE_MESSAGE = (
    "Filen är för stor: servern tar emot högst {limit}. "
    "Korta eller dela upp inspelningen och försök igen."
)
NO_ROOM_MESSAGE = (
    "Det finns inte plats för filen på servern. Ta bort gamla inspelningar "
    "eller be administratören frigöra utrymme och försök igen."
)
TOO_LONG_MESSAGE = (
    "Delen är längre än det som återstår av filen; inget av den sparades."
)
CHECKSUM_MESSAGE = (
    "Kontrollsumman stämmer inte, så delen sparades inte. Skicka den igen."
)
VERSION_MESSAGE = "Servern talar tus 1.0.0. Ladda om sidan och försök igen."
CONTENT_TYPE_MESSAGE = "Data ska skickas som application/offset+octet-stream."
DROPPED_MESSAGE = "Anslutningen bröts. Det som hann fram är sparat; fortsätt därifrån."
IDLE_MESSAGE = (
    "Ingen data kom på länge. Det som hann fram är sparat; fortsätt därifrån."
)
HANDOFF_MESSAGE = (
    "Filen togs emot men kunde inte lämnas vidare. Försök igen om en stund."
)

CompletionHandler = Callable[[str, str, Path, dict[str, str]], Awaitable[None] | None]


class UploadError(PedagogiskError):
    """A tus request that cannot be honoured, with the status tus prescribes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class UploadStats:
    """Counters for metrics, shared with the app; nothing here resets them."""

    in_progress: int = 0  # request bodies being received right now
    bytes_received: int = 0  # body bytes read from clients since start
    completed: int = 0  # uploads handed to ``on_complete``


@dataclass(frozen=True)
class _Info:
    """The info file beside an upload's bytes."""

    length: int | None  # None until a deferred length is sent
    offset: int  # bytes fsync'ed to the data file
    metadata: str  # the Upload-Metadata header as the client sent it
    expires: float
    completed: bool = False
    notified: bool = False
    owner: str = ""  # empty in info files written before it was kept


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
    return router


def purge_expired(
    root: Path, *, now: float | None = None, ttl_s: float = DEFAULT_TTL_S
) -> int:
    """Remove unfinished uploads past their expiry and return how many went.

    Also removes what a crash can leave behind after ``ttl_s``: bytes without an
    info file, half-written info files, and info files of completed uploads whose
    bytes the app has moved away. Uploads receiving right now are left alone.
    Blocking: run it in a thread from a periodic task.
    """
    now = time.time() if now is None else now
    removed = 0
    for info_path in Path(root).glob("*/*.info"):
        try:
            info = _read_info(info_path)
        except (PedagogiskError, OSError, ValueError, TypeError):
            continue
        data = info_path.with_suffix("")
        if info.expires >= now or (info.completed and data.exists()):
            continue
        if _remove(data, info_path):
            removed += 1
    for path in Path(root).glob("*/*"):
        leftover = path.name.endswith(".tmp") or (
            _ID.fullmatch(path.name) and not _info_path(path).exists()
        )
        with contextlib.suppress(FileNotFoundError):
            if leftover and path.stat().st_mtime < now - ttl_s:
                path.unlink()
                removed += 1
    if removed:
        log.info("purged %d expired uploads", removed)
    return removed


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
            await _pump(request, upload, limit, self)
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


class _Upload:
    """One upload held under its lock for the length of one request.

    The lock is a ``flock`` on the data file, so it also holds between
    processes and dies with a killed one. Every method blocks; call them
    through ``to_thread``.
    """

    def __init__(self, data: Path, fd: int, info: _Info, ttl_s: float) -> None:
        self.data = data
        self.fd = fd  # -1 when the app has moved a completed upload away
        self.info = info
        self.ttl_s = ttl_s
        self.written = info.offset
        self._hash: Any = None
        self._digest = b""
        self._commit_bytes = 0

    @classmethod
    def open(cls, data: Path, info_path: Path, ttl_s: float) -> _Upload:
        try:
            fd = os.open(data, os.O_RDWR)
        except FileNotFoundError:
            fd = -1
        try:
            if fd >= 0 and not _try_lock(fd):
                raise UploadError(423, LOCKED_MESSAGE)
            info = _read_info(info_path)
            if fd < 0 and not info.completed:
                raise NotFoundError(NOT_FOUND_MESSAGE)
            if fd >= 0 and os.fstat(fd).st_size < info.offset:
                # Only a broken disk or a hand outside this module does this;
                # tell the client the truth so it sends the missing bytes again.
                log.warning("upload %s lost bytes past its offset", data.name)
                info = dataclasses.replace(info, offset=os.fstat(fd).st_size)
                _write_info(info_path, info)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return cls(data, fd, info, ttl_s)

    def begin(self, checksum: tuple[str, bytes] | None, commit_bytes: int) -> None:
        """Get ready to append at the committed offset, dropping any stale tail."""
        os.ftruncate(self.fd, self.info.offset)
        self.written = self.info.offset
        self._hash = None
        if checksum is not None:
            self._hash = hashlib.new(checksum[0], usedforsecurity=False)
            self._digest = checksum[1]
        self._commit_bytes = 0 if checksum else commit_bytes

    def write(self, block: bytearray) -> None:
        start = self.written
        view = memoryview(block)
        while view:
            written = os.pwrite(self.fd, view, self.written)
            if self._hash is not None:
                self._hash.update(view[:written])
            self.written += written
            view = view[written:]
        if _WRITE_BACK_NOW is not None:
            # Start writing the block out now, so a commit's fdatasync finds
            # little left to write and dirty pages of a 2 GB upload never pile up.
            os.posix_fadvise(self.fd, start, self.written - start, _WRITE_BACK_NOW)
        if self._commit_bytes and (
            self.written - self.info.offset >= self._commit_bytes
        ):
            self.commit()

    def commit(self, **changes: Any) -> None:
        """Make the bytes written so far durable, then record them."""
        if self.written != self.info.offset:
            os.fdatasync(self.fd)
        expires = time.time() + self.ttl_s
        info = dataclasses.replace(
            self.info, offset=self.written, expires=expires, **changes
        )
        _write_info(_info_path(self.data), info)
        self.info = info

    def finish(self) -> None:
        if self._hash is not None and self._hash.digest() != self._digest:
            self.rollback()
            raise UploadError(460, CHECKSUM_MESSAGE)
        self.commit(completed=self.written == self.info.length)

    def rollback(self) -> None:
        os.ftruncate(self.fd, self.info.offset)
        self.written = self.info.offset

    def keep_received(self) -> None:
        """Commit what an interrupted body delivered, as far as the disk allows."""
        if self._hash is not None:
            self.rollback()
            return
        # On a full disk the info file needs room too; give some bytes back.
        for keep in (self.written, self.written - 64 * 1024, self.written - MB):
            if keep <= self.info.offset:
                break
            try:
                os.ftruncate(self.fd, keep)
                self.written = keep
                self.commit()
                return
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        self.rollback()

    def mark_notified(self) -> None:
        self.info = dataclasses.replace(self.info, notified=True)
        _write_info(_info_path(self.data), self.info)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def end_stalled(
    root: Path,
    *,
    on_complete: CompletionHandler,
    stalled_s: float,
    ttl_s: float = DEFAULT_TTL_S,
    wanted: Callable[[dict[str, str]], bool] = lambda metadata: True,
    now: float | None = None,
) -> int:
    """End deferred-length uploads that got no bytes for ``stalled_s``.

    Each one that holds some bytes and whose metadata ``wanted`` accepts gets
    the length it has reached and goes to ``on_complete``, exactly as if its
    client had sent that length. A client that comes back and sends the length
    is answered as for any completed upload; one that sends more bytes gets 413.
    A completed upload whose hand-over failed is handed over again. Uploads
    receiving right now, and those without bytes, are left alone. Returns how
    many were handed over.
    """
    since = (time.time() if now is None else now) - stalled_s
    ended = 0
    for info_path in await to_thread.run_sync(_stalled, Path(root), since, wanted):
        try:
            if await _end_one(info_path, on_complete, ttl_s, since):
                ended += 1
        except PedagogiskError as exc:
            log.warning("stalled upload %s not handed over: %s", info_path, exc)
    return ended


def _stalled(
    root: Path, since: float, wanted: Callable[[dict[str, str]], bool]
) -> list[Path]:
    """The info files of uploads that look stalled since ``since``."""
    found = []
    for info_path in sorted(root.glob("*/*.info")):
        try:
            info = _read_info(info_path)
            stalled = _is_stalled(info, info_path.stat().st_mtime, since)
            if stalled and wanted(_decoded_metadata(info.metadata)):
                found.append(info_path)
        except (PedagogiskError, OSError, ValueError, TypeError):
            continue
    return found


def _is_stalled(info: _Info, last_data: float, since: float) -> bool:
    unended = info.length is None and not info.completed
    unclaimed = info.completed and not info.notified
    return (
        (unended or unclaimed)
        and info.offset > 0
        and bool(info.owner)
        and last_data <= since
    )


async def _end_one(
    info_path: Path, on_complete: CompletionHandler, ttl_s: float, since: float
) -> bool:
    data = info_path.with_name(info_path.name.removesuffix(".info"))
    try:
        upload = await to_thread.run_sync(_Upload.open, data, info_path, ttl_s)
    except PedagogiskError:
        return False  # receiving right now (423), or gone meanwhile
    try:
        # Looked at again under the lock: the client may have just come back.
        if upload.fd < 0 or not _is_stalled(
            upload.info, info_path.stat().st_mtime, since
        ):
            return False
        if not upload.info.completed:
            # Bytes past the offset were never committed: a request cut short.
            upload.info = dataclasses.replace(upload.info, length=upload.info.offset)
            await to_thread.run_sync(upload.rollback)
            await to_thread.run_sync(functools.partial(upload.commit, completed=True))
            log.info("stalled upload %s ended at %d bytes", data.name, upload.written)
        await _hand_over(on_complete, upload.info.owner, data.name, upload)
        return True
    finally:
        with anyio.CancelScope(shield=True):
            await to_thread.run_sync(upload.close)


async def _hand_over(
    on_complete: CompletionHandler, owner: str, upload_id: str, upload: _Upload
) -> None:
    """Give a completed upload to ``on_complete`` once, while it is locked."""
    metadata = _decoded_metadata(upload.info.metadata)
    try:
        result = on_complete(owner, upload_id, upload.data, metadata)
        if inspect.isawaitable(result):
            await result
    except PedagogiskError:
        raise
    except Exception as exc:
        raise UploadError(500, HANDOFF_MESSAGE) from exc

    await to_thread.run_sync(upload.mark_notified)
    log.info("upload %s complete, %d bytes", upload_id, upload.info.offset)


async def _pump(
    request: Request, upload: _Upload, limit: int, endpoints: _Endpoints
) -> None:
    """Receive the body while a worker thread writes it a few blocks behind.

    Raises the first failure: an OSError from the disk, or ClientDisconnect,
    TimeoutError (a silent client) or UploadError (a body past ``limit``).
    """
    send, receive = anyio.create_memory_object_stream[bytearray](QUEUE_BLOCKS)
    disk_errors: list[OSError] = []
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_write_blocks, receive, upload, endpoints.disk, disk_errors)
        body = _blocks(request, limit, endpoints.idle_timeout_s, endpoints.stats)
        async with send, contextlib.aclosing(body) as blocks:
            try:
                async for block in blocks:
                    await send.send(block)
            except anyio.BrokenResourceError:
                pass  # the writer stopped on a disk error, raised below
            except (ClientDisconnect, TimeoutError, UploadError) as exc:
                failure = exc
    if disk_errors:
        raise disk_errors[0]
    if failure is not None:
        raise failure


async def _blocks(
    request: Request, limit: int, idle_timeout_s: float, stats: UploadStats
) -> AsyncGenerator[bytearray, None]:
    """The body in blocks of about BLOCK_BYTES, never going past ``limit``."""
    chunks = request.stream()
    block = bytearray()
    received = 0
    while True:
        try:
            with anyio.fail_after(idle_timeout_s):
                chunk = await anext(chunks, None)
        except (ClientDisconnect, TimeoutError):
            if block:
                yield block  # what arrived before the client went away is kept
            raise
        if chunk is None:
            break
        received += len(chunk)
        stats.bytes_received += len(chunk)
        if received > limit:
            raise UploadError(413, TOO_LONG_MESSAGE)
        block += chunk
        if len(block) >= BLOCK_BYTES:
            yield block
            block = bytearray()
    if block:
        yield block


async def _write_blocks(
    receive: MemoryObjectReceiveStream[bytearray],
    upload: _Upload,
    disk: anyio.CapacityLimiter,
    errors: list[OSError],
) -> None:
    async with receive:
        async for block in receive:
            try:
                await to_thread.run_sync(upload.write, block, limiter=disk)
            except OSError as exc:
                errors.append(exc)
                return


async def _settle(action: Callable[[], None]) -> None:
    """Run a clean-up step to its end even when the request is being cancelled."""
    with anyio.CancelScope(shield=True):
        try:
            await to_thread.run_sync(action)
        except OSError:
            # The request already fails with the first error; the info file
            # still holds the last committed offset.
            log.exception("upload clean-up failed")


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


def _owner_dir(root: Path, owner: str) -> Path:
    return root / hashlib.sha256(owner.encode()).hexdigest()[:32]


def _upload_paths(root: Path, owner: str, upload_id: str) -> tuple[Path, Path]:
    if not _ID.fullmatch(upload_id):
        raise NotFoundError(NOT_FOUND_MESSAGE)
    data = _owner_dir(root, owner) / upload_id
    return data, _info_path(data)


def _info_path(data: Path) -> Path:
    return data.with_name(data.name + ".info")


def _read_info(info_path: Path) -> _Info:
    try:
        return _Info(**json.loads(info_path.read_bytes()))
    except FileNotFoundError as exc:
        raise NotFoundError(NOT_FOUND_MESSAGE) from exc


def _write_info(info_path: Path, info: _Info) -> None:
    """Replace the info file atomically and durably."""
    tmp = info_path.with_name(info_path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(json.dumps(dataclasses.asdict(info)).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, info_path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    folder = os.open(info_path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _remove(data: Path, info_path: Path) -> bool:
    """Delete an upload unless a request holds it; False when one does."""
    if not info_path.exists():
        raise NotFoundError(NOT_FOUND_MESSAGE)
    try:
        fd = os.open(data, os.O_RDONLY)
    except FileNotFoundError:
        info_path.unlink(missing_ok=True)
        return True
    try:
        if not _try_lock(fd):
            return False
        info_path.unlink(missing_ok=True)
        data.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def _check_not_expired(info: _Info) -> None:
    if not info.completed and info.expires < time.time():
        raise UploadError(410, EXPIRED_MESSAGE)


def _expiry_headers(info: _Info) -> dict[str, str]:
    if info.completed:
        return {}
    return {"Upload-Expires": formatdate(info.expires, usegmt=True)}


def _is_offset_stream(request: Request) -> bool:
    kind = request.headers.get("Content-Type", "").split(";")[0]
    return kind.strip().lower() == OFFSET_TYPE


def _header_int(request: Request, name: str) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    if not _NUMBER.fullmatch(raw.strip()):
        raise _bad_header(name)
    return int(raw)


def _bad_header(name: str) -> UploadError:
    return UploadError(400, f"HTTP-huvudet {name} saknas eller är ogiltigt.")


def _checked_metadata(header: str) -> str:
    """Validate Upload-Metadata (``key base64,key base64``) and return it as is."""
    if len(header) > MAX_METADATA_CHARS:
        raise _bad_header("Upload-Metadata")
    _decoded_metadata(header)
    return header


def _decoded_metadata(header: str) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = pair.partition(" ")
        if key in metadata or " " in value.strip():
            raise _bad_header("Upload-Metadata")
        try:
            raw = base64.b64decode(value.strip(), validate=True)
        except binascii.Error as exc:
            raise _bad_header("Upload-Metadata") from exc
        metadata[key] = raw.decode("utf-8", "replace")
    return metadata


def _parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    if header is None:
        return None
    algorithm, _, value = header.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise _bad_header("Upload-Checksum")
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except binascii.Error as exc:
        raise _bad_header("Upload-Checksum") from exc
    if len(digest) != hashlib.new(algorithm, usedforsecurity=False).digest_size:
        raise _bad_header("Upload-Checksum")
    return algorithm, digest


def _size_text(size: int) -> str:
    """A size the way a Swedish reader writes it: ``4 GB``, ``1,5 MB``."""
    unit, scale = ("GB", 1024**3) if size >= 1024**3 else ("MB", 1024**2)
    number = f"{size / scale:.1f}".removesuffix(".0").replace(".", ",")
    return f"{number} {unit}"
