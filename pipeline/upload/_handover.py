"""The hand-over of a completed upload to the app."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from anyio import to_thread

from pipeline.errors import PedagogiskError
from pipeline.upload._files import _Upload
from pipeline.upload._protocol import HANDOFF_MESSAGE, UploadError, _decoded_metadata

# One logger for the whole package, so log lines still name pipeline.upload.
log = logging.getLogger(__package__)

CompletionHandler = Callable[[str, str, Path, dict[str, str]], Awaitable[None] | None]


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
