"""The background worker: runs queued transcripts, one at a time, off the web thread.

Transcription is decoupled from the browser: a job is a row in the database,
so closing the tab changes nothing and a restart picks the queue up again.
The engines are loaded on first use and kept: one model per process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from models import Engine, open_engine
from pipeline import recordings, transcript
from pipeline.config import Settings
from pipeline.errors import PedagogiskError
from pipeline.storage import Store

log = logging.getLogger(__name__)

EngineLoader = Callable[[Settings, str], Engine]


class Worker:
    """A single thread that segments and transcribes whatever is waiting."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        load_engine: EngineLoader = open_engine,
    ) -> None:
        self._store = store
        self._settings = settings
        self._load_engine = load_engine
        self._engines: dict[str, Engine] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress: dict[str, transcript.Progress] = {}
        self._lock = threading.Lock()
        self.engine_note = ""

    # Control -------------------------------------------------------------------

    def start(self) -> None:
        """Requeue what a crash left running, then start the thread."""
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE transcripts SET state = 'waiting' WHERE state = 'running'"
            )
        self._thread = threading.Thread(
            target=self._loop, name="pd-worker", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the current job to stop after the segments in flight."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()

    def progress(self, transcript_id: str) -> transcript.Progress | None:
        with self._lock:
            return self._progress.get(transcript_id)

    # Work ------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = self._next_job()
            if job is None:
                self._wake.wait(timeout=5.0)
                self._wake.clear()
                continue
            self._run(job)

    def _next_job(self) -> dict[str, object] | None:
        rows = self._store.query(
            "SELECT t.id, t.engine, t.recording_id FROM transcripts t"
            " JOIN recordings r ON r.id = t.recording_id"
            " WHERE t.state = 'waiting' AND r.state != 'uploading'"
            " ORDER BY t.created_at LIMIT 1"
        )
        return rows[0] if rows else None

    def _run(self, job: dict[str, object]) -> None:
        transcript_id = str(job["id"])
        started = time.monotonic()
        log.info("job %s started (%s)", transcript_id, job["engine"])
        try:
            recordings.prepare(
                self._store,
                str(job["recording_id"]),
                target_s=self._settings.segment_seconds,
            )
            engine = self._engine(str(job["engine"]))
            self._store.set_transcript_model(transcript_id, engine.model_name)
            transcript.run(
                self._store,
                transcript_id,
                engine,
                on_progress=lambda p: self._record(transcript_id, p),
                stop=self._stop,
            )
        except transcript.Stopped:
            log.info("job %s paused for shutdown", transcript_id)
            return
        except PedagogiskError as exc:
            self._fail(transcript_id, exc.message)
            log.warning("job %s failed: %s", transcript_id, exc.message)
            return
        except Exception:
            log.exception("job %s crashed", transcript_id)
            self._fail(transcript_id, "Ett oväntat fel inträffade. Försök igen.")
            return
        finally:
            with self._lock:
                self._progress.pop(transcript_id, None)
        log.info("job %s finished in %.1f s", transcript_id, time.monotonic() - started)

    def _engine(self, name: str) -> Engine:
        if name not in self._engines:
            engine = self._load_engine(self._settings, name)
            self.engine_note = getattr(engine, "note", "") or self.engine_note
            self._engines[name] = engine
        return self._engines[name]

    def _record(self, transcript_id: str, progress: transcript.Progress) -> None:
        with self._lock:
            self._progress[transcript_id] = progress

    def _fail(self, transcript_id: str, message: str) -> None:
        # The transcript may already be marked failed by the runner; a failure
        # while preparing the recording is recorded here.
        self._store.set_transcript_state(transcript_id, "failed", error=message)
