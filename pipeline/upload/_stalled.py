"""Deferred-length uploads whose client went away: ended and handed over."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import anyio
from anyio import to_thread

from pipeline.errors import PedagogiskError
from pipeline.upload._files import DEFAULT_TTL_S, _Info, _read_info, _Upload
from pipeline.upload._handover import CompletionHandler, _hand_over
from pipeline.upload._protocol import _decoded_metadata

# One logger for the whole package, so log lines still name pipeline.upload.
log = logging.getLogger(__package__)


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
