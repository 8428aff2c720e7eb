"""A request body streamed to disk, block by block, a few blocks behind."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Callable

import anyio
from anyio import to_thread
from anyio.streams.memory import MemoryObjectReceiveStream
from fastapi import Request
from starlette.requests import ClientDisconnect

from pipeline.upload._files import _Upload
from pipeline.upload._protocol import TOO_LONG_MESSAGE, UploadError
from pipeline.upload._stats import UploadStats

# One logger for the whole package, so log lines still name pipeline.upload.
log = logging.getLogger(__package__)

BLOCK_BYTES = 256 * 1024
QUEUE_BLOCKS = 2


async def _pump(
    request: Request,
    upload: _Upload,
    limit: int,
    disk: anyio.CapacityLimiter,
    idle_timeout_s: float,
    stats: UploadStats,
) -> None:
    """Receive the body while a worker thread writes it a few blocks behind.

    Raises the first failure: an OSError from the disk, or ClientDisconnect,
    TimeoutError (a silent client) or UploadError (a body past ``limit``).
    """
    send, receive = anyio.create_memory_object_stream[bytearray](QUEUE_BLOCKS)
    disk_errors: list[OSError] = []
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_write_blocks, receive, upload, disk, disk_errors)
        body = _blocks(request, limit, idle_timeout_s, stats)
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
