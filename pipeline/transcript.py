"""Run a transcript: every pending segment through one engine, durably.

A transcript of a stretch (``start_s``/``end_s`` set) covers only the segments
overlapping it.

Each finished segment is committed before the next result is awaited, so a
crash, a kill -9 or a restart resumes at the first unfinished segment and
never transcribes a finished one again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from models.engine import Engine, Line, SegmentText
from pipeline.errors import PedagogiskError
from pipeline.storage import Segment, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """Where a transcript stands, for a progress bar."""

    segments_done: int
    segments_total: int
    audio_done_s: float
    audio_total_s: float
    eta_s: float | None

    @property
    def fraction(self) -> float:
        if self.audio_total_s <= 0:
            return 0.0
        return min(1.0, self.audio_done_s / self.audio_total_s)


OnProgress = Callable[[Progress], None]


class Stopped(Exception):
    """The run was asked to stop; finished segments are kept."""


def run(
    store: Store,
    transcript_id: str,
    engine: Engine,
    *,
    on_progress: OnProgress | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Transcribe every segment not yet stored, then mark the transcript done."""
    transcript = store.transcript(transcript_id)
    pieces = store.segments(transcript["recording_id"])
    if transcript["start_s"] is not None and transcript["end_s"] is not None:
        pieces = overlapping(pieces, transcript["start_s"], transcript["end_s"])
    done = store.done_segment_indexes(transcript_id)
    pending = [p for p in pieces if p.idx not in done]
    tracker = _Tracker(pieces, done, on_progress)

    store.set_transcript_state(transcript_id, "running")
    log.info(
        "transcript %s: %d of %d segments to do with %s/%s",
        transcript_id,
        len(pending),
        len(pieces),
        engine.name,
        engine.model_name,
    )
    started = time.monotonic()
    try:
        _run_pending(store, transcript_id, engine, pending, tracker, stop)
    except Stopped:
        store.set_transcript_state(transcript_id, "waiting")
        raise
    except PedagogiskError as exc:
        store.set_transcript_state(transcript_id, "failed", error=exc.message)
        raise
    store.set_transcript_state(transcript_id, "done")
    log.info("transcript %s done in %.1f s", transcript_id, time.monotonic() - started)


def overlapping(pieces: list[Segment], start_s: float, end_s: float) -> list[Segment]:
    """The segments a transcript of the stretch ``start_s``–``end_s`` covers.

    Each is taken whole: segments are cut at pauses, so a stretch widened to
    their edges never splits a word.
    """
    return [p for p in pieces if p.end_s > start_s and p.start_s < end_s]


def _run_pending(
    store: Store,
    transcript_id: str,
    engine: Engine,
    pending: list[Segment],
    tracker: _Tracker,
    stop: threading.Event | None,
) -> None:
    """Keep ``parallelism`` segments in flight; store each as it finishes.

    After a failure or a stop request no new segment starts, but those already
    in flight are awaited and stored: their work is not thrown away.
    """
    language = store.transcript(transcript_id)["language"]
    queue = list(reversed(pending))
    in_flight: dict[Future[tuple[SegmentText, float]], Segment] = {}
    failure: PedagogiskError | None = None
    pool = ThreadPoolExecutor(max_workers=engine.parallelism)
    try:
        while in_flight or (queue and failure is None and not _stopped(stop)):
            while queue and len(in_flight) < engine.parallelism:
                if failure is not None or _stopped(stop):
                    break
                piece = queue.pop()
                in_flight[pool.submit(_timed, engine, piece, language)] = piece
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                piece = in_flight.pop(future)
                try:
                    result, elapsed = future.result()
                except PedagogiskError as exc:
                    failure = failure or exc
                    continue
                _save(store, transcript_id, piece, result, elapsed)
                tracker.advance(piece)
    finally:
        # Ctrl-C lands here with segments in flight: do not wait for them.
        pool.shutdown(wait=False, cancel_futures=True)
    if failure is not None:
        raise failure
    if queue:
        raise Stopped


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def _timed(engine: Engine, piece: Segment, language: str) -> tuple[SegmentText, float]:
    log.info("segment %d started (%.1f s audio)", piece.idx, piece.duration_s)
    started = time.monotonic()
    result = engine.transcribe(piece.path, language)
    elapsed = time.monotonic() - started
    log.info("segment %d transcribed in %.1f s", piece.idx, elapsed)
    return result, elapsed


def _save(
    store: Store,
    transcript_id: str,
    piece: Segment,
    result: SegmentText,
    elapsed: float,
) -> None:
    lines = [line.shifted(piece.start_s) for line in result.lines]
    store.save_segment_result(
        transcript_id,
        piece,
        text=result.text,
        lines=[line.to_dict() for line in lines],
        elapsed_s=elapsed,
        cost_usd=result.cost_usd,
    )


def lines(store: Store, transcript_id: str) -> list[Line]:
    """Every stored line of a transcript, in time order."""
    return [
        Line.from_dict(item)
        for row in store.segment_results(transcript_id)
        for item in row["lines"]
    ]


class _Tracker:
    """Counts finished audio and estimates the time left from this run's pace."""

    def __init__(
        self, pieces: list[Segment], done: set[int], on_progress: OnProgress | None
    ) -> None:
        self._total_s = sum(p.duration_s for p in pieces)
        self._total = len(pieces)
        self._done = len(done)
        self._done_s = sum(p.duration_s for p in pieces if p.idx in done)
        self._run_s = 0.0
        self._started = time.monotonic()
        self._on_progress = on_progress
        self._emit()

    def advance(self, piece: Segment) -> None:
        self._done += 1
        self._done_s += piece.duration_s
        self._run_s += piece.duration_s
        self._emit()

    def _emit(self) -> None:
        if self._on_progress is None:
            return
        eta = None
        if self._run_s > 0:
            pace = (time.monotonic() - self._started) / self._run_s
            eta = pace * (self._total_s - self._done_s)
        self._on_progress(
            Progress(self._done, self._total, self._done_s, self._total_s, eta)
        )
