"""Recording in the browser: the widget, and recordings whose page went away.

``static/pd-record.js`` records with MediaRecorder (WebM/Opus) and sends each
second of audio as it comes, as a PATCH to a tus upload of deferred length
whose metadata says ``live``. Stopping sends the length, which completes the
upload; from there it is an ordinary upload that becomes a recording.

When the page goes away mid-recording (reload, closed tab, crashed browser)
the part already recorded must still be transcribed. The page that loads
next sends the pieces the old page kept in IndexedDB but could not send, then
ends the upload there; if no page comes back, the task here ends it at the
offset it reached once it has received nothing for
``PD_RECORDING_IDLE_MINUTES``. Either way the part becomes a recording of its
own, and a new recording starts afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from pipeline import upload

if TYPE_CHECKING:
    from web.server import Services

log = logging.getLogger(__name__)

LIVE_KEY = "live"
LONGEST_CHECK_INTERVAL_S = 60.0
SHORTEST_CHECK_INTERVAL_S = 1.0
WIDGET = """
<div id="pd-record" class="pd-record">
  <div class="pd-record-row">
    <button type="button" id="pd-record-start" class="pd-button">Spela in</button>
    <button type="button" id="pd-record-stop" class="pd-button" disabled>
      Stoppa och transkribera</button>
    <span id="pd-record-time" class="pd-record-time" aria-label="Inspelningstid">
      0:00</span>
    <span class="pd-level" title="Ljudnivå" style="display:inline-block;
      width:8rem;height:.6rem;background:#ddd;border-radius:.3rem;
      overflow:hidden;vertical-align:middle">
      <span id="pd-record-level" class="pd-level-fill" style="display:block;
      height:100%;width:0;background:#2da44e"></span></span>
  </div>
  <div id="pd-record-status" class="pd-record-status" role="status">
    Spela in ett samtal direkt här. Ljudet laddas upp medan du spelar in, så
    inget går förlorat om sidan stängs.
  </div>
</div>
"""


def is_recording(metadata: dict[str, str]) -> bool:
    """Whether an upload's metadata marks it as made by the page's recorder."""
    return metadata.get(LIVE_KEY) == "1"


def make_recorder_router(services: Services) -> APIRouter:
    """A router without routes whose lifespan ends abandoned recordings."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(_end_abandoned_forever(services))
        try:
            yield
        finally:
            task.cancel()

    return APIRouter(lifespan=lifespan)


async def end_abandoned(services: Services) -> int:
    """Hand over every recording upload idle past the limit; how many went."""
    settings = services.settings
    return await upload.end_stalled(
        services.upload_root,
        on_complete=services.accept_upload,
        stalled_s=settings.recording_idle_minutes * 60,
        ttl_s=settings.upload_expiry_hours * 3600,
        wanted=is_recording,
    )


async def _end_abandoned_forever(services: Services) -> None:
    stalled_s = services.settings.recording_idle_minutes * 60
    interval = min(
        LONGEST_CHECK_INTERVAL_S, max(SHORTEST_CHECK_INTERVAL_S, stalled_s / 4)
    )
    while True:
        try:
            ended = await end_abandoned(services)
            if ended:
                log.info("%d abandoned browser recordings handed over", ended)
        except Exception:
            log.exception("ending abandoned recordings failed; trying again later")
        await asyncio.sleep(interval)
